"""The protocol's server and model metadata, for HTTP and gRPC alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.dataplane.infer import output_datatypes, v2_datatype
from app.dataplane.resolve import resolve
from ml.registry import ModelRegistry, VersionState

SERVER_NAME = "onnx-model-server"
EXTENSIONS = ("binary_tensor_data",)
PLATFORM = "onnxruntime_onnx"


def server_metadata(version: str) -> dict[str, Any]:
    """The server's name and version, and the protocol extensions it supports."""
    return {"name": SERVER_NAME, "version": version, "extensions": list(EXTENSIONS)}


def dims(shape: Sequence[int | None]) -> list[int]:
    """A shape as the protocol writes it: -1 for a dynamic dimension."""
    return [-1 if d is None else d for d in shape]


def model_metadata(registry: ModelRegistry, name: str, version: str | None) -> dict[str, Any]:
    """A model's serving versions, platform, and the tensors of the version asked for (the
    default when None)."""
    model = resolve(registry, name, version)
    entry = registry.get(name)
    serving = sorted(
        v
        for v, status in entry.versions.items()
        if status.state is VersionState.AVAILABLE and status.model is not None
    )
    datatypes = {i.name: v2_datatype(i.onnx_type) for i in model.signature.inputs}
    outputs = output_datatypes(model.signature)
    return {
        "name": model.name,
        "versions": [str(v) for v in serving],
        "platform": PLATFORM,
        "inputs": [
            {"name": input_name, "datatype": datatypes[input_name], "shape": dims(shape)}
            for input_name, shape in model.codec.tensor_shapes().items()
        ],
        "outputs": [
            {"name": info.name, "datatype": outputs[info.name], "shape": dims(info.shape)}
            for info in model.signature.outputs
            if outputs[info.name] is not None
        ],
    }
