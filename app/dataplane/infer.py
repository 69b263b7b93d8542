"""One inference, whatever the protocol: the outputs asked for, the run through the registry
(a request naming no version follows the model's rollout), and the offload rule."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import numpy as np

from app.dataplane.checks import invalid
from app.dataplane.resolve import version_number
from ml.model import LoadedModel
from ml.registry import ModelRegistry
from ml.signature import BY_ONNX, Signature

# Bodies and answers larger than this are decoded and encoded in a worker thread, off the loop.
INLINE_BYTES = 256 * 1024

Params = ParamSpec("Params")
Result = TypeVar("Result")
# A request header (or gRPC metadata) by name, or None: a rollout's sticky key.
HeaderLookup = Callable[[str], str | None]


# Per-request records are plain slotted dataclasses: a frozen one takes twice as long to build.
@dataclass(slots=True)
class InferCall:
    """A decoded request: its id, input arrays by name, and each output to return with whether
    it goes back as binary data (`None`: every tensor output, binary if `binary_default`)."""

    id: str | None
    arrays: dict[str, np.ndarray]
    outputs: list[tuple[str, bool]] | None
    binary_default: bool


async def offload(
    size: int, work: Callable[Params, Result], *args: Params.args, **kwargs: Params.kwargs
) -> Result:
    """`work(*args)`, in a worker thread when `size` bytes pass INLINE_BYTES: decoding or
    encoding that much would hold the event loop (and every other request) up."""
    if size > INLINE_BYTES:
        return await asyncio.to_thread(work, *args, **kwargs)
    return work(*args, **kwargs)


def output_bytes(raw: Mapping[str, Any], names: Sequence[str]) -> int:
    """The size of the outputs to send, for the offload rule."""
    return sum(getattr(raw[name], "nbytes", 0) for name in names)


def v2_datatype(onnx_type: str) -> str | None:
    """The protocol's name of an ONNX type; None for a type that is not a tensor the protocol
    can carry (a ZipMap's sequence of maps)."""
    datatype = BY_ONNX.get(onnx_type)
    return None if datatype is None else datatype.v2


@functools.lru_cache(maxsize=256)  # fixed per loaded version: not rebuilt per request
def output_datatypes(signature: Signature) -> dict[str, str | None]:
    """Each output's datatype, or None for one that is not a tensor (a ZipMap). Shared: read,
    never change, the dict it returns."""
    return {info.name: v2_datatype(info.onnx_type) for info in signature.outputs}


def select_outputs(call: InferCall, signature: Signature, model: str) -> list[tuple[str, bool]]:
    """The outputs to return, with their binary flag; a ZipMap output is left out unless asked
    for by name, which is refused (it is a sequence of maps, not a tensor)."""
    datatypes = output_datatypes(signature)
    if call.outputs is None:
        return [(name, call.binary_default) for name, kind in datatypes.items() if kind]
    for name, _ in call.outputs:
        if name not in datatypes:
            raise invalid(
                f"model {model} has no output {name!r}; its outputs are " + ", ".join(datatypes)
            )
        if datatypes[name] is None:
            tensors = ", ".join(n for n, kind in datatypes.items() if kind) or "none"
            raise invalid(
                f"output {name!r} is a sequence of maps (a ZipMap), not a tensor; the tensor "
                f"outputs of {model} are {tensors}"
            )
    return call.outputs


async def infer(
    registry: ModelRegistry,
    model: LoadedModel,
    number: int | None,
    call: InferCall,
    header: HeaderLookup,
) -> tuple[LoadedModel, dict[str, Any], list[tuple[str, bool]]]:
    """Run a decoded call on `model`, the version the request resolved to (`number`, or None
    for the default): the outputs asked for are checked first; a request naming no version
    follows the model's rollout, so another version may answer, whose outputs are checked
    again. Returns the model that answered, its raw outputs, and the outputs to send."""
    outputs = select_outputs(call, model.signature, model.name)
    answered, raw = await registry.infer(model.name, number, call.arrays, header)
    if answered is not model:
        outputs = select_outputs(call, answered.signature, answered.name)
    return answered, raw, outputs


@dataclass(slots=True)
class Inference:
    """A request answered: the decoded call, the version that answered, its raw outputs and
    the outputs to send (with their binary flag)."""

    call: InferCall
    model: LoadedModel
    raw: dict[str, Any]
    outputs: list[tuple[str, bool]]


async def infer_request(
    registry: ModelRegistry,
    name: str,
    version: str | None,
    size: int,
    decode: Callable[[], InferCall],
    header: HeaderLookup,
) -> Inference:
    """One infer request of any protocol: the version it names is resolved first (an unknown
    or unready model is answered before its body is read), then `decode()` reads the request
    (`size` bytes of tensors: off the event loop when large), then it runs."""
    number = version_number(registry, name, version)
    model = registry.resolve(name, number)
    call = await offload(size, decode)
    answered, raw, outputs = await infer(registry, model, number, call, header)
    return Inference(call, answered, raw, outputs)
