"""GET /models/{name}/drift: each version's drift windows against its training profile."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field
from starlette.responses import Response

from app.deps import RuntimeDep
from app.drift import DriftMonitor
from app.responses import json_response, problem_docs
from ml.model import LoadedModel

router = APIRouter(prefix="/models", tags=["models"])


class VersionDrift(BaseModel):
    version: int
    profiled: bool = Field(description="whether the version has a profile.json")
    state: str = Field(description="ok, drift, waiting (no window closed yet) or unprofiled")
    windows_closed: int | None = None
    open_window_rows: int | None = None
    last_window: dict[str, Any] | None = Field(
        None,
        description="the last closed window: rows, per feature PSI, threshold, state, data "
        "quality shares and the bins that moved most; the answers' PSI",
    )
    recent_windows: list[dict[str, Any]] = Field(default_factory=list)


class DriftReport(BaseModel):
    model: str
    window_rows: int
    window_s: float
    min_rows: int
    versions: list[VersionDrift]


def version_drift(monitor: DriftMonitor, model: LoadedModel) -> dict[str, Any]:
    """One version's drift as GET /models/{name}/drift reports it (the status page's too)."""
    if model.drift is None:
        return {"version": model.version, "profiled": False, "state": "unprofiled"}
    view = monitor.view(model.name, model.version) or {"closed": 0, "open_rows": 0, "reports": []}
    reports = view["reports"]
    last = reports[-1] if reports else None
    return {
        "version": model.version,
        "profiled": True,
        "state": last["state"] if last else "waiting",
        "windows_closed": view["closed"],
        "open_window_rows": view["open_rows"],
        "last_window": last,
        "recent_windows": [
            {
                "window": r["window"],
                "closed_at": r["closed_at"],
                "rows": r["rows"],
                "state": r["state"],
                "features_over_threshold": r["features_over_threshold"],
                "answers_psi": r["answers"]["psi"] if r["answers"] else None,
            }
            for r in reports
        ],
    }


def drift_summary(monitor: DriftMonitor, model: LoadedModel) -> dict[str, Any]:
    """The status page's view of a version's drift: state, its last window, and the features
    over their threshold with their PSI."""
    drift = version_drift(monitor, model)
    last = drift.get("last_window")
    return {
        "state": drift["state"],
        "window": last["window"] if last else None,
        "rows": last["rows"] if last else None,
        "moved": [
            {"name": f["name"], "psi": round(f["psi"], 4), "threshold": round(f["threshold"], 4)}
            for f in (last["features"] if last else [])
            if f["state"] == "drift"
        ],
    }


@router.get("/{name}/drift", response_model=DriftReport, responses=problem_docs(404))
async def describe_drift(
    runtime: RuntimeDep, name: str = Path(description="Model name", max_length=64)
) -> Response:
    """Drift of each loaded version: its last windows against its training profile."""
    entry = runtime.registry.get(name)
    monitor, rule = runtime.drift, runtime.drift.rule
    return json_response(
        {
            "model": name,
            "window_rows": rule.rows,
            "window_s": rule.seconds,
            "min_rows": rule.min_rows,
            "versions": [
                version_drift(monitor, status.model)
                for _, status in sorted(entry.versions.items())
                if status.model is not None
            ],
        }
    )
