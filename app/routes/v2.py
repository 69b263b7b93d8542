"""The Open Inference Protocol (KServe V2) over the same registry, checks and batching as /predict.

Health probes answer 200 for true and 400 for false, as the protocol ("a 4xx status code
indicates false") and Triton do. Errors are `{"error": "..."}` (app.errors): 400 for a request
that does not fit the protocol or the model, 404 for an unknown model or version, 503 for a
version that does not serve now. The outputs are the model's raw ONNX outputs by name; a ZipMap
output (a sequence of maps) is not a tensor: it is left out unless asked for, which is a 400.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from app import __version__
from app import v2_codec as codec
from app.body import read_body
from app.config import Settings
from app.deps import CallDep, RegistryDep, RuntimeDep, SettingsDep
from app.edge import Call
from app.errors import HTTPProblem
from app.responses import json_response
from app.v2_schemas import (
    PLATFORM,
    V2InferRequest,
    V2InferResponse,
    V2Live,
    V2ModelMetadata,
    V2ModelReady,
    V2Ready,
    V2ServerMetadata,
    error_docs,
    inline_schema,
)
from ml.errors import ModelNotFound, ModelNotReady
from ml.model import LoadedModel
from ml.registry import ModelRegistry, VersionState

SERVER_NAME = "onnx-model-server"
EXTENSIONS = ["binary_tensor_data"]
# Bodies and answers larger than this are decoded and encoded in a worker thread, off the loop.
INLINE_BYTES = 256 * 1024

router = APIRouter(prefix="/v2", tags=["open inference protocol"], responses=error_docs(404, 405))

Name = Annotated[str, Path(description="Model name")]
Version = Annotated[str, Path(description="Model version, a positive integer")]


@router.get("/health/live", response_model=V2Live)
async def live() -> Response:
    """200 while the process serves."""
    return json_response({"live": True})


@router.get("/health/ready", response_model=V2Ready, responses=error_docs(400))
async def ready(runtime: RuntimeDep) -> Response:
    """200 when /health/ready is 200; 400 before the store is loaded and while draining."""
    reason = runtime.not_ready_reason()
    if reason is not None:
        raise HTTPProblem(400, "Not ready", reason)
    return json_response({"ready": True})


@router.get("", response_model=V2ServerMetadata)
async def server_metadata() -> Response:
    """The server's name and version, and the protocol extensions it supports."""
    return json_response({"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS})


@router.get("/models/{name}", response_model=V2ModelMetadata, responses=error_docs(503))
async def model_metadata(registry: RegistryDep, name: Name) -> Response:
    """A model's serving versions, platform, and the tensors of its default version."""
    return _metadata(registry, name, None)


@router.get(
    "/models/{name}/versions/{version}",
    response_model=V2ModelMetadata,
    responses=error_docs(503),
)
async def version_metadata(registry: RegistryDep, name: Name, version: Version) -> Response:
    """A model's serving versions, platform, and the tensors of this version."""
    return _metadata(registry, name, version)


@router.get("/models/{name}/ready", response_model=V2ModelReady, responses=error_docs(400))
async def model_ready(registry: RegistryDep, name: Name) -> Response:
    """200 when the model's default version serves; 400 when it does not (yet)."""
    return _ready(registry, name, None)


@router.get(
    "/models/{name}/versions/{version}/ready",
    response_model=V2ModelReady,
    responses=error_docs(400),
)
async def version_ready(registry: RegistryDep, name: Name, version: Version) -> Response:
    """200 when this model version serves; 400 when it does not (yet)."""
    return _ready(registry, name, version)


INFER_DOCS = {
    "requestBody": {
        "required": True,
        "description": f"JSON; or, with the {codec.HEADER_LENGTH} header, that many bytes of "
        "JSON followed by the binary tensor data of the inputs that set binary_data_size.",
        "content": {
            "application/json": {"schema": inline_schema(V2InferRequest)},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
INFER_ERRORS = error_docs(400, 413, 503)


@router.post(
    "/models/{name}/infer",
    response_model=V2InferResponse,
    responses=INFER_ERRORS,
    openapi_extra=INFER_DOCS,
)
async def infer(
    request: Request, registry: RegistryDep, settings: SettingsDep, call: CallDep, name: Name
) -> Response:
    """Run the model's default version on the input tensors."""
    return await _infer(request, registry, settings, call, name, None)


@router.post(
    "/models/{name}/versions/{version}/infer",
    response_model=V2InferResponse,
    responses=INFER_ERRORS,
    openapi_extra=INFER_DOCS,
)
async def infer_version(
    request: Request,
    registry: RegistryDep,
    settings: SettingsDep,
    call: CallDep,
    name: Name,
    version: Version,
) -> Response:
    """Run this model version on the input tensors."""
    return await _infer(request, registry, settings, call, name, version)


def _version_number(registry: ModelRegistry, name: str, version: str | None) -> int | None:
    """The version asked for as a number; 404 when it cannot be one (a positive integer)."""
    if version is None:
        return None
    if not (version.isascii() and version.isdigit() and int(version) >= 1):
        registry.get(name)  # an unknown model is named as such first
        raise ModelNotFound(f"model {name!r} has no version {version!r}")
    return int(version)


def _resolve(registry: ModelRegistry, name: str, version: str | None) -> LoadedModel:
    """The version asked for: 404 when unknown, 503 when it does not serve now."""
    return registry.resolve(name, _version_number(registry, name, version))


def _metadata(registry: ModelRegistry, name: str, version: str | None) -> Response:
    return json_response(metadata_of(registry, name, version))


def metadata_of(registry: ModelRegistry, name: str, version: str | None) -> dict[str, Any]:
    """The protocol's model metadata, for HTTP and gRPC alike."""
    model = _resolve(registry, name, version)
    entry = registry.get(name)
    serving = sorted(
        v
        for v, status in entry.versions.items()
        if status.state is VersionState.AVAILABLE and status.model is not None
    )
    datatypes = {i.name: codec.v2_datatype(i.onnx_type) for i in model.signature.inputs}
    outputs = codec.output_datatypes(model.signature)
    return {
        "name": model.name,
        "versions": [str(v) for v in serving],
        "platform": PLATFORM,
        "inputs": [
            {"name": input_name, "datatype": datatypes[input_name], "shape": codec.dims(shape)}
            for input_name, shape in model.codec.tensor_shapes().items()
        ],
        "outputs": [
            {"name": info.name, "datatype": outputs[info.name], "shape": codec.dims(info.shape)}
            for info in model.signature.outputs
            if outputs[info.name] is not None
        ],
    }


def _ready(registry: ModelRegistry, name: str, version: str | None) -> Response:
    try:
        model = _resolve(registry, name, version)
    except ModelNotReady as exc:  # the protocol's "false"; an unknown model stays a 404
        raise HTTPProblem(400, "Not ready", exc.detail) from None
    return json_response({"name": model.name, "ready": True})


async def infer_call(
    registry: ModelRegistry,
    model: LoadedModel,
    number: int | None,
    decoded: codec.InferCall,
    header: Callable[[str], str | None],
) -> tuple[LoadedModel, dict[str, Any], list[tuple[str, bool]]]:
    """Run a decoded infer call (HTTP or gRPC) on `model`, the version the request resolved to:
    the outputs asked for are checked first; a request naming no version follows the model's
    rollout, so another version may answer, whose outputs are checked again. Returns the model
    that answered, its raw outputs, and the outputs to send."""
    outputs = codec.select_outputs(decoded, model.signature, model.name)
    answered, raw = await registry.infer(model.name, number, decoded.arrays, header)
    if answered is not model:
        outputs = codec.select_outputs(decoded, answered.signature, answered.name)
    return answered, raw, outputs


async def _infer(
    request: Request,
    registry: ModelRegistry,
    settings: Settings,
    call: Call,
    name: str,
    version: str | None,
) -> Response:
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise HTTPProblem(415, "Unsupported media type", f"Content-Encoding {encoding} is not read")
    body = await read_body(request.scope, request.receive, settings.max_body_bytes, json_only=False)
    number = _version_number(registry, name, version)
    model = registry.resolve(name, number)
    header_length = request.headers.get(codec.HEADER_LENGTH)
    max_rows = settings.max_batch_rows
    if len(body) > INLINE_BYTES:
        decoded = await asyncio.to_thread(codec.decode_request, body, header_length, max_rows)
    else:
        decoded = codec.decode_request(body, header_length, max_rows)
    model, raw, outputs = await infer_call(registry, model, number, decoded, request.headers.get)
    call.model = model.name
    call.version = str(model.version)
    args = (model.name, model.version, decoded.id, raw, outputs)
    if sum(getattr(raw[n], "nbytes", 0) for n, _ in outputs) > INLINE_BYTES:
        content, json_size = await asyncio.to_thread(codec.encode_response, *args)
    else:
        content, json_size = codec.encode_response(*args)
    if json_size is None:
        return Response(content, media_type="application/json")
    return Response(
        content,
        media_type="application/octet-stream",
        headers={codec.HEADER_LENGTH: str(json_size)},
    )
