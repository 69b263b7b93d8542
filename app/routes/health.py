"""Liveness and readiness, for load balancers and Kubernetes probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.datastructures import State
from starlette.responses import Response

from app.problems import problem_response
from app.responses import json_response, problem_docs
from app.schemas import Health

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=Health)
async def live() -> Response:
    """200 while the process serves."""
    return json_response({"status": "live"})


def not_ready_reason(state: State) -> str | None:
    """Why the server is not ready, or None when it is (shared with /v2/health/ready)."""
    if getattr(state, "draining", False):
        return "the server is shutting down"
    if not state.registry.ready:
        if state.registry.scanned:
            return "no model version is available"
        return "the model store is still being loaded"
    return None


@router.get("/ready", response_model=Health, responses=problem_docs(503))
async def ready(request: Request) -> Response:
    """200 once the first scan is done and a version serves; 503 before that and while draining."""
    reason = not_ready_reason(request.app.state)
    if reason is not None:
        return problem_response(503, "Not ready", reason, headers={"Retry-After": "1"})
    return json_response({"status": "ready"})
