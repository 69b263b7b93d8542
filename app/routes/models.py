"""GET /models and /models/{name}: what the store serves, and what each model expects."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Path
from starlette.responses import Response

from app.deps import RegistryDep, RuntimeDep
from app.feedback import FeedbackBook
from app.responses import json_response, problem_docs
from app.schemas import ModelDetail, ModelList, RolloutReport
from ml.errors import ModelNotReady
from ml.model import LoadedModel
from ml.registry import ModelEntry

router = APIRouter(prefix="/models", tags=["models"])


def model_summary(entry: ModelEntry) -> dict[str, Any]:
    """A model as GET /models lists it (also the status page's view of it)."""
    return {
        "name": entry.name,
        "default_version": entry.default_version,
        "version_policy": str(entry.config.version_policy) if entry.config else None,
        "versions": [
            {
                "version": v,
                "state": s.state.value,
                "error": s.error,
                "samples_checked": s.model.samples_checked if s.model is not None else None,
                **_serving(s.model),
            }
            for v, s in sorted(entry.versions.items())
        ],
        "error": entry.config_error,
    }


def _serving(model: LoadedModel | None) -> dict[str, Any]:
    """How a loaded version answers: its task, whether it takes missing values, its targets."""
    if model is None:
        return {"task": None, "missing_values": None, "targets": None}
    signature = model.signature
    return {
        "task": signature.task,
        "missing_values": signature.missing_values,
        "targets": None if signature.targets is None else list(signature.targets),
    }


@router.get("", response_model=ModelList)
async def list_models(registry: RegistryDep) -> Response:
    """Every model with its versions, their state, and the default version."""
    return json_response({"models": [model_summary(entry) for entry in registry]})


@router.get("/{name}", response_model=ModelDetail, responses=problem_docs(404, 503))
async def describe_model(
    registry: RegistryDep, name: str = Path(description="Model name", max_length=64)
) -> Response:
    """One model: task, features with their types, labels, versions, and the JSON Schema of a row
    (of the default version)."""
    entry = registry.get(name)
    model = entry.default
    if model is None:
        raise ModelNotReady(f"no version of model {name!r} is available to describe")
    signature = model.signature
    return json_response(
        {
            **model_summary(entry),
            "version": model.version,
            "task": signature.task,
            "description": model.metadata.get("description"),
            "features": [{"name": f.name, "type": f.json_type} for f in signature.features],
            "labels": list(model.labels) if model.labels is not None else None,
            "targets": None if signature.targets is None else list(signature.targets),
            "missing_values": signature.missing_values,
            "outputs": [o.name for o in signature.outputs],
            "row_schema": model.codec.row_schema(),
        }
    )


@router.get("/{name}/rollout", response_model=RolloutReport, responses=problem_docs(404))
async def describe_rollout(
    registry: RegistryDep,
    runtime: RuntimeDep,
    name: str = Path(description="Model name", max_length=64),
) -> Response:
    """The model's rollout: state, traffic split, shadow agreement and latency by version, and
    the feedback figures of both versions."""
    report = registry.rollout_report(name)
    if report["state"] != "none":
        report["feedback"] = await rollout_feedback(runtime.feedback, report)
    return json_response(report)


async def rollout_feedback(book: FeedbackBook, report: dict[str, Any]) -> dict[str, Any]:
    """POST /feedback's figures of a rollout's default and candidate, every worker's added up."""
    own = book.snapshot()
    found = (await asyncio.to_thread(book.summary, own)).get(report["model"], {})
    versions = (report.get("default_version"), report.get("candidate"))
    return {str(v): found[v] for v in versions if v is not None and v in found}
