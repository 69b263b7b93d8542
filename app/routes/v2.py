"""The Open Inference Protocol (KServe V2) over HTTP: health, server and model metadata, model
readiness. Each route converts and delegates to app.dataplane; inference
(`POST /v2/models/{name}[/versions/{version}]/infer`) is answered by the edge (app.v2_infer).

Health probes answer 200 for true and 400 for false, as the protocol ("a 4xx status code
indicates false") and Triton do. Errors are `{"error": "..."}` (app.errors): 400 for a request
that does not fit the protocol or the model, 404 for an unknown model or version, 503 for a
version that does not serve now. The outputs are the model's raw ONNX outputs by name; a ZipMap
output (a sequence of maps) is not a tensor: it is left out unless asked for, which is a 400.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from app import __version__
from app.dataplane import metadata
from app.dataplane.resolve import readiness
from app.deps import RegistryDep, RuntimeDep
from app.errors import HTTPProblem
from app.responses import json_response
from app.v2_schemas import (
    V2Live,
    V2ModelMetadata,
    V2ModelReady,
    V2Ready,
    V2ServerMetadata,
    error_docs,
)
from ml.registry import ModelRegistry

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
    return json_response(metadata.server_metadata(__version__))


@router.get("/models/{name}", response_model=V2ModelMetadata, responses=error_docs(503))
async def model_metadata(registry: RegistryDep, name: Name) -> Response:
    """A model's serving versions, platform, and the tensors of its default version."""
    return json_response(metadata.model_metadata(registry, name, None))


@router.get(
    "/models/{name}/versions/{version}",
    response_model=V2ModelMetadata,
    responses=error_docs(503),
)
async def version_metadata(registry: RegistryDep, name: Name, version: Version) -> Response:
    """A model's serving versions, platform, and the tensors of this version."""
    return json_response(metadata.model_metadata(registry, name, version))


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


def _ready(registry: ModelRegistry, name: str, version: str | None) -> Response:
    found = readiness(registry, name, version)
    if found.model is None:  # the protocol's "false", with the reason
        raise HTTPProblem(400, "Not ready", found.reason)
    return json_response({"name": found.model.name, "ready": True})
