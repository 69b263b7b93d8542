"""Liveness and readiness, for load balancers and Kubernetes probes."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from app.deps import RuntimeDep
from app.errors import HTTPProblem
from app.responses import json_response, problem_docs
from app.schemas import Health

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=Health)
async def live() -> Response:
    """200 while the process serves."""
    return json_response({"status": "live"})


@router.get("/ready", response_model=Health, responses=problem_docs(503))
async def ready(runtime: RuntimeDep) -> Response:
    """200 once the first scan is done and a version serves; 503 before that and while draining."""
    reason = runtime.not_ready_reason()
    if reason is not None:
        raise HTTPProblem(503, "Not ready", reason, headers={"Retry-After": "1"})
    return json_response({"status": "ready"})
