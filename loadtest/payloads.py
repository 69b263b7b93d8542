"""Request bodies for each route, built once before the load starts.

A stream is what one Locust user sends: a method, a path, headers and a ring of ready-made
bodies, so that the generator spends no time encoding JSON under load.
"""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.rows import ModelInputs, Row, as_list

JSON = {"Content-Type": "application/json"}
V2_DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "BOOL": np.bool_}


class Route(enum.StrEnum):
    PREDICT = "predict"  # POST /predict, one row
    BATCH = "batch"  # POST /predict/batch, --batch-rows rows
    V2 = "v2"  # POST /v2/models/{name}[/versions/{v}]/infer, JSON tensors
    V2_BINARY = "v2-binary"  # the same with Triton's binary tensor extension


@dataclass(frozen=True)
class Stream:
    """What one user sends, in turn: `bodies[0]`, `bodies[1]`, ... and round again."""

    name: str  # what the report calls it
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    bodies: tuple[bytes, ...] = (b"",)
    body_headers: tuple[dict[str, str], ...] = ()  # per body, when a header depends on it

    def request(self, index: int) -> tuple[bytes, dict[str, str]]:
        """The body and headers of the `index`-th request."""
        at = index % len(self.bodies)
        if not self.body_headers:
            return self.bodies[at], self.headers
        return self.bodies[at], {**self.headers, **self.body_headers[at]}

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "bodies": [base64.b64encode(b).decode() for b in self.bodies],
            "body_headers": list(self.body_headers),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stream:
        bodies = tuple(base64.b64decode(b) for b in data["bodies"])
        body_headers = tuple(dict(h) for h in data.get("body_headers", ()))
        headers = dict(data["headers"])
        return cls(data["name"], data["method"], data["path"], headers, bodies, body_headers)


def write_streams(path: Path, streams: Sequence[Stream]) -> None:
    path.write_text(json.dumps([s.to_json() for s in streams]))


def read_streams(path: Path) -> list[Stream]:
    return [Stream.from_json(item) for item in json.loads(path.read_text())]


def model_stream(
    inputs: ModelInputs,
    rows: Sequence[Row],
    route: Route,
    batch_rows: int,
    pin_version: bool,
    bodies: int = 32,
    name: str | None = None,
) -> Stream:
    """`bodies` distinct requests for `route`, cycling through `rows`; each names the version
    when `pin_version` (else the server's default version answers)."""
    per_request = 1 if route is Route.PREDICT else batch_rows
    fixed_batch = inputs.tensors[0].shape[0]
    if route in (Route.V2, Route.V2_BINARY) and fixed_batch > 0:
        # A tensor takes exactly the rows its graph fixes; /predict/batch splits rows itself.
        per_request = fixed_batch
    chunks = [
        [rows[(i * per_request + j) % len(rows)] for j in range(per_request)] for i in range(bodies)
    ]
    label = name or f"{inputs.model} v{inputs.version} {route.value}"
    if route in (Route.PREDICT, Route.BATCH):
        head: dict[str, Any] = {"model": inputs.model}
        if pin_version:
            head["version"] = inputs.version
        if route is Route.PREDICT:
            encoded = [json.dumps({**head, "features": c[0]}).encode() for c in chunks]
            return Stream(label, "POST", "/predict", JSON, tuple(encoded))
        encoded = [json.dumps({**head, "instances": c}).encode() for c in chunks]
        return Stream(label, "POST", "/predict/batch", JSON, tuple(encoded))
    path = f"/v2/models/{inputs.model}"
    if pin_version:
        path += f"/versions/{inputs.version}"
    path += "/infer"
    if route is Route.V2:
        encoded = [json.dumps({"inputs": _v2_json_inputs(inputs, c)}).encode() for c in chunks]
        return Stream(label, "POST", path, JSON, tuple(encoded))
    binary = [_v2_binary(inputs, c) for c in chunks]
    sizes = tuple({"Inference-Header-Content-Length": str(size)} for _, size in binary)
    headers = {"Content-Type": "application/octet-stream"}
    return Stream(label, "POST", path, headers, tuple(b for b, _ in binary), sizes)


def _arrays(inputs: ModelInputs, rows: Sequence[Row]) -> dict[str, np.ndarray]:
    """The input tensors of `rows`, by name, as the version's inputs lay them out."""
    values = [as_list(inputs, row) for row in rows]
    if not inputs.per_feature:
        tensor = inputs.tensors[0]
        return {tensor.name: _array(values, tensor.datatype).reshape(len(rows), -1)}
    position = {name: i for i, name in enumerate(inputs.names)}
    return {
        t.name: _array([[v[position[t.name]]] for v in values], t.datatype) for t in inputs.tensors
    }


def _array(values: list[list[Any]], datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        return np.array(values, dtype=object)
    return np.array(values, dtype=V2_DTYPES[datatype])


def _v2_json_inputs(inputs: ModelInputs, rows: Sequence[Row]) -> list[dict[str, Any]]:
    datatypes = {t.name: t.datatype for t in inputs.tensors}
    return [
        {
            "name": name,
            "shape": list(a.shape),
            "datatype": datatypes[name],
            "data": a.ravel().tolist(),
        }
        for name, a in _arrays(inputs, rows).items()
    ]


def _v2_binary(inputs: ModelInputs, rows: Sequence[Row]) -> tuple[bytes, int]:
    """A body in Triton's binary tensor extension, as tritonclient.http sends it, and the length
    of its JSON header."""
    from tritonclient.http import InferenceServerClient, InferInput

    datatypes = {t.name: t.datatype for t in inputs.tensors}
    tensors = []
    for name, array in _arrays(inputs, rows).items():
        tensor = InferInput(name, list(array.shape), datatypes[name])
        tensor.set_data_from_numpy(array, binary_data=True)
        tensors.append(tensor)
    body, json_size = InferenceServerClient.generate_request_body(tensors)
    return bytes(body), int(json_size or 0)
