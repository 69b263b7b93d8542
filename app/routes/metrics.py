"""GET /metrics: Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from app.deps import RuntimeDep

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response)
async def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus metrics of every worker."""
    body, content_type = runtime.metrics.exposition()
    return Response(body, media_type=content_type)
