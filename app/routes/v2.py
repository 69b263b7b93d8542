"""The Open Inference Protocol (KServe V2) over the same registry, checks and batching as /predict.

Health probes answer 200 for true and 400 for false, as the protocol ("a 4xx status code
indicates false") and Triton do. Errors are `{"error": "..."}` (app.errors): 400 for a request
that does not fit the protocol or the model, 404 for an unknown model or version, 503 for a
version that does not serve now. The outputs are the model's raw ONNX outputs by name; a ZipMap
output (a sequence of maps) is not a tensor: it is left out unless asked for, which is a 400.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.datastructures import State
from starlette.responses import Response

from app import v2_codec as codec
from app.body import read_body
from app.errors import v2_error_response
from app.observe import MODEL_KEY, VERSION_KEY
from app.problems import HTTPProblem
from app.responses import json_response
from app.routes.health import not_ready_reason
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
from ml.registry import VersionState

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
async def ready(request: Request) -> Response:
    """200 when /health/ready is 200; 400 before the store is loaded and while draining."""
    reason = not_ready_reason(request.app.state)
    if reason is not None:
        return v2_error_response(400, reason)
    return json_response({"ready": True})


@router.get("", response_model=V2ServerMetadata)
async def server_metadata(request: Request) -> Response:
    """The server's name and version, and the protocol extensions it supports."""
    return json_response(
        {"name": SERVER_NAME, "version": request.app.version, "extensions": EXTENSIONS}
    )


@router.get("/models/{name}", response_model=V2ModelMetadata, responses=error_docs(503))
async def model_metadata(request: Request, name: Name) -> Response:
    """A model's serving versions, platform, and the tensors of its default version."""
    return _metadata(request.app.state, name, None)


@router.get(
    "/models/{name}/versions/{version}",
    response_model=V2ModelMetadata,
    responses=error_docs(503),
)
async def version_metadata(request: Request, name: Name, version: Version) -> Response:
    """A model's serving versions, platform, and the tensors of this version."""
    return _metadata(request.app.state, name, version)


@router.get("/models/{name}/ready", response_model=V2ModelReady, responses=error_docs(400))
async def model_ready(request: Request, name: Name) -> Response:
    """200 when the model's default version serves; 400 when it does not (yet)."""
    return _ready(request.app.state, name, None)


@router.get(
    "/models/{name}/versions/{version}/ready",
    response_model=V2ModelReady,
    responses=error_docs(400),
)
async def version_ready(request: Request, name: Name, version: Version) -> Response:
    """200 when this model version serves; 400 when it does not (yet)."""
    return _ready(request.app.state, name, version)


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
async def infer(request: Request, name: Name) -> Response:
    """Run the model's default version on the input tensors."""
    return await _infer(request, name, None)


@router.post(
    "/models/{name}/versions/{version}/infer",
    response_model=V2InferResponse,
    responses=INFER_ERRORS,
    openapi_extra=INFER_DOCS,
)
async def infer_version(request: Request, name: Name, version: Version) -> Response:
    """Run this model version on the input tensors."""
    return await _infer(request, name, version)


def _resolve(state: State, name: str, version: str | None) -> LoadedModel:
    """The version asked for: 404 when unknown (a version is a positive integer), 503 when it
    does not serve now."""
    number = None
    if version is not None:
        if not (version.isascii() and version.isdigit() and int(version) >= 1):
            state.registry.get(name)  # an unknown model is named as such first
            raise ModelNotFound(f"model {name!r} has no version {version!r}")
        number = int(version)
    model: LoadedModel = state.registry.resolve(name, number)
    return model


def _metadata(state: State, name: str, version: str | None) -> Response:
    return json_response(metadata_of(state, name, version))


def metadata_of(state: State, name: str, version: str | None) -> dict[str, Any]:
    """The protocol's model metadata, for HTTP and gRPC alike."""
    model = _resolve(state, name, version)
    entry = state.registry.get(name)
    serving = sorted(
        v
        for v, status in entry.versions.items()
        if status.state is VersionState.AVAILABLE and status.model is not None
    )
    datatypes = {i.name: codec.ONNX_DATATYPES[i.onnx_type] for i in model.signature.inputs}
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


def _ready(state: State, name: str, version: str | None) -> Response:
    try:
        model = _resolve(state, name, version)
    except ModelNotReady as exc:  # the protocol's "false"; an unknown model stays a 404
        return v2_error_response(400, exc.detail)
    return json_response({"name": model.name, "ready": True})


async def _infer(request: Request, name: str, version: str | None) -> Response:
    state = request.app.state
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise HTTPProblem(415, "Unsupported media type", f"Content-Encoding {encoding} is not read")
    body = await read_body(request, state.settings.max_body_bytes)
    model = _resolve(state, name, version)
    header_length = request.headers.get(codec.HEADER_LENGTH)
    max_rows = state.settings.max_batch_rows
    if len(body) > INLINE_BYTES:
        call = await asyncio.to_thread(codec.decode_request, body, header_length, max_rows)
    else:
        call = codec.decode_request(body, header_length, max_rows)
    outputs = codec.select_outputs(call, model.signature, model.name)
    raw = await model.infer_arrays(call.arrays)
    request.scope[MODEL_KEY] = model.name
    request.scope[VERSION_KEY] = str(model.version)
    args = (model.name, model.version, call.id, raw, outputs)
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
