"""GET /ui: the status page, its assets, and GET /ui/status, the JSON it polls.

The page, its stylesheet and its script ship in the package (app/ui/) and load nothing from
anywhere else, which the Content-Security-Policy of each answer enforces in the browser.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from importlib import resources
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException
from starlette.responses import Response

from app.deps import RuntimeDep
from app.drift import DriftMonitor
from app.metrics import multiprocess_dir
from app.recent import RecentTraffic
from app.responses import json_response
from app.routes.drift import drift_summary
from app.routes.models import model_summary
from app.runtime import Runtime
from ml.registry import ModelEntry
from ml.rollout_report import describe_rollout

router = APIRouter(prefix="/ui", tags=["status page"], include_in_schema=False)

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


@functools.cache
def _assets() -> dict[str, tuple[bytes, str]]:
    """The page's files by name, read once when the router is installed (UI_ENABLED), never
    for an app without the status page."""
    return {
        item.name: (item.read_bytes(), _CONTENT_TYPES[os.path.splitext(item.name)[1]])
        for item in resources.files("app").joinpath("ui").iterdir()
        if os.path.splitext(item.name)[1] in _CONTENT_TYPES
    }


_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
NO_ROLLOUT: dict[str, Any] = {
    "state": "none",
    "candidate": None,
    "traffic_percent": None,
    "shadow_percent": None,
    "agreement": None,
    "agreement_ci95": None,
    "halt_reason": None,
    "last_promotion": None,
    "rollback_restores": None,
}


def install(api: FastAPI, runtime: Runtime) -> None:
    """Serve the status page when UI_ENABLED, with a last-minute view of traffic fed by the
    metrics' flush."""
    if not runtime.settings.ui_enabled:
        return
    recent = RecentTraffic(multiprocess_dir())
    runtime.metrics.on_flush(recent.take)
    runtime.recent_traffic = recent
    _assets()  # a missing file fails the start, not the first visit
    api.include_router(router)


def _asset(name: str) -> Response:
    found = _assets().get(name)
    if found is None:
        raise HTTPException(404, f"no asset {name!r} on the status page")
    body, content_type = found
    return Response(body, media_type=content_type, headers=_HEADERS)


@router.get("")
async def page() -> Response:
    """The status page."""
    return _asset("index.html")


@router.get("/assets/{name}")
async def asset(name: str) -> Response:
    """The page's stylesheet and script."""
    return _asset(name)


def rollout_of(entry: ModelEntry) -> dict[str, Any]:
    """The fields of the `GET /models/{name}/rollout` answer that the page shows (those of
    NO_ROLLOUT, with the shadow agreement lifted to the top)."""
    report = describe_rollout(entry)
    shadow = report.get("shadow") or {}
    return {
        **{key: report.get(key) for key in NO_ROLLOUT},
        "agreement": shadow.get("agreement"),
        "agreement_ci95": shadow.get("agreement_ci95"),
    }


def _model(
    entry: ModelEntry,
    traffic: dict[tuple[str, str], Any],
    drift: DriftMonitor,
    feedback: dict[str, Any],
) -> dict[str, Any]:
    summary = model_summary(entry)
    scored = feedback.get(entry.name, {})
    for version in summary["versions"]:
        version["default"] = version["version"] == summary["default_version"]
        version["traffic"] = traffic.get((entry.name, str(version["version"])))
        loaded = entry.versions[version["version"]].model
        version["drift"] = drift_summary(drift, loaded) if loaded is not None else None
        version["feedback"] = scored.get(version["version"])
    return {**summary, "rollout": rollout_of(entry)}


@router.get("/status")
async def status(runtime: RuntimeDep) -> Response:
    """Every model and version with its state, and the traffic of the last minute."""
    registry = runtime.registry
    recent = runtime.recent_traffic
    assert recent is not None  # install() set it before including this route
    own = recent.own()
    others = await asyncio.to_thread(recent.others) if multiprocess_dir() else []
    workers = [slots for slots in (own, *others) if slots]
    traffic = recent.summary(workers)
    book = runtime.feedback
    feedback = await asyncio.to_thread(book.summary, book.snapshot())
    settings = runtime.settings
    response = json_response(
        {
            "generated_at": time.time(),
            "ready": registry.ready,
            "window_s": recent.window_s,
            "poll_interval_s": settings.poll_interval_s,
            "docs_enabled": settings.docs_enabled,
            "workers": {
                "configured": settings.workers,
                "answered_by": recent.pid,
                "traffic_from": len(workers),
            },
            "models": [_model(entry, traffic, runtime.drift, feedback) for entry in registry],
        }
    )
    response.headers["Cache-Control"] = "no-store"
    return response
