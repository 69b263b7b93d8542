"""`POST /v2/models/{name}[/versions/{version}]/infer`, the Open Inference Protocol's inference
over HTTP: answered by the edge itself (app.edge), as `/predict` is, and documented in the
OpenAPI document from the same InferRoute entries (app.openapi).

    Edge -> read_body -> answer: decode (app.v2_codec) -> app.dataplane.infer -> encode
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from app.dataplane.binary import HEADER_LENGTH
from app.dataplane.infer import HeaderLookup, infer_request, offload, output_bytes
from app.runtime import Runtime
from app.v2_codec import decode_request, encode_response

PREFIX = "/v2/models/"
INFER = "infer"
VERSIONS = "versions"


@dataclass(frozen=True, slots=True)
class InferRoute:
    """One infer path: its template (the metrics' route label and the OpenAPI path), whether it
    names a version, and what the OpenAPI document says of it."""

    path: str
    versioned: bool
    summary: str


DEFAULT_VERSION = InferRoute(
    PREFIX + "{name}/infer", False, "Run the model's default version on the input tensors"
)
NAMED_VERSION = InferRoute(
    PREFIX + "{name}/versions/{version}/infer", True, "Run this model version on the input tensors"
)
INFER_ROUTES = (DEFAULT_VERSION, NAMED_VERSION)


# Per-request records are plain slotted dataclasses: a frozen one takes twice as long to build.
@dataclass(slots=True)
class InferTarget:
    """A request path that is an infer route: the route, and the model and version it names."""

    route: InferRoute
    name: str
    version: str | None


@dataclass(slots=True)
class InferReply:
    """An answer: its body, the size of the body's JSON part when binary outputs follow it, and
    the model version that answered."""

    body: bytes
    json_size: int | None
    model: str
    version: int


def match(path: str) -> InferTarget | None:
    """The infer route `path` asks for, or None (a path of no route, or of another /v2 route)."""
    if not path.startswith(PREFIX) or not path.endswith(INFER):
        return None
    parts = path[len(PREFIX) :].split("/")
    if len(parts) == 2 and parts[0] and parts[1] == INFER:
        return InferTarget(DEFAULT_VERSION, parts[0], None)
    if len(parts) == 4 and parts[0] and parts[1] == VERSIONS and parts[2] and parts[3] == INFER:
        return InferTarget(NAMED_VERSION, parts[0], parts[2])
    return None


async def answer(
    runtime: Runtime, target: InferTarget, body: bytes, header: HeaderLookup
) -> InferReply:
    """Decode the body, run it through the dataplane, encode the answer; large bodies and
    answers are decoded and encoded off the event loop."""
    max_rows = runtime.settings.max_batch_rows
    name, version = target.name, target.version
    length = header(HEADER_LENGTH)
    done = await infer_request(
        runtime.registry,
        name,
        version,
        len(body),
        functools.partial(decode_request, body, length, max_rows, name, version),
        header,
    )
    model, outputs = done.model, done.outputs
    content, json_size = await offload(
        output_bytes(done.raw, [output for output, _ in outputs]),
        encode_response, model.name, model.version, done.call.id, done.raw, outputs,
    )  # fmt: skip
    return InferReply(content, json_size, model.name, model.version)
