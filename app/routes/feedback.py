"""POST /feedback: the true outcomes of earlier answers, scored per version (app.feedback)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.body import parse_json, read_body, validate
from app.deps import RuntimeDep
from app.feedback import FeedbackBook
from app.responses import json_response, problem_docs
from app.schemas import FeedbackItem, FeedbackRequest, FeedbackResponse
from app.v2_schemas import inline_schema
from ml.errors import FieldError, InvalidInput, ModelNotReady
from ml.model import LoadedModel
from ml.registry import ModelEntry
from ml.served import Served
from ml.signature import OutputKind

router = APIRouter(tags=["feedback"])

CLASSIFIERS = (OutputKind.CLASSIFIER, OutputKind.CLASSIFIER_ZIPMAP)


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    responses=problem_docs(400, 404, 413, 415, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(FeedbackRequest)}},
        }
    },
)
async def feedback(request: Request, runtime: RuntimeDep) -> Response:
    """Score earlier answers against their true outcomes: accuracy (classifiers) or mean absolute
    error (regressors), per version."""
    settings = runtime.settings
    raw = await read_body(request.scope, request.receive, settings.max_body_bytes, json_only=True)
    body = validate(FeedbackRequest, parse_json(raw))
    limit = settings.feedback_max_items
    if len(body.items) > limit:
        message = f"items has {len(body.items)} items; at most {limit} (FEEDBACK_MAX_ITEMS)"
        raise InvalidInput(message, [FieldError(("items",), message)])
    entry = runtime.registry.get(body.model)
    recent = runtime.prediction_log.recent if runtime.prediction_log is not None else {}
    book = runtime.feedback
    joined = [_joined(entry, item, recent.get(item.request_id)) for item in body.items]
    classifier = _check(entry, body.items, joined)
    results = [
        _count(book, entry.name, *each) for each in zip(body.items, joined, classifier, strict=True)
    ]
    if book.shared:  # other workers read this process's figures
        await asyncio.to_thread(book.publish, book.snapshot())
    scored = sum(r["outcome"] in ("correct", "incorrect", "scored") for r in results)
    return json_response(
        {"model": entry.name, "scored": scored, "ignored": len(results) - scored, "items": results}
    )


Joined = tuple[int, Any] | None  # the version that answered and its prediction, when known


def _joined(entry: ModelEntry, item: FeedbackItem, note: Served | None) -> Joined:
    """The item's version and prediction: as sent, else from this process's logged answer."""
    if item.version is not None and item.prediction is not None:
        return item.version, item.prediction
    model = note.model if note is not None else None
    if note is None or model is None or model.name != entry.name:
        return None
    version = item.version if item.version is not None else model.version
    if version != model.version:
        return None
    if item.prediction is not None:
        return version, item.prediction
    predictions = note.predictions
    if predictions is None and note.outputs is not None:
        predictions = model.decode_outputs(list(note.outputs.values()))
    if predictions is None or predictions.predictions is None:
        return None
    return version, predictions.predictions[0]


def _kind_model(entry: ModelEntry, version: int | None) -> LoadedModel:
    """The loaded version whose answers say how feedback is scored: the one named if it is
    loaded, else the default."""
    model = entry.available(version) if version is not None else None
    model = model or entry.default
    if model is None:
        raise ModelNotReady(f"no version of model {entry.name!r} is available to score feedback")
    return model


def _check(entry: ModelEntry, items: list[FeedbackItem], joined: list[Joined]) -> list[bool]:
    """Every item fits the model, or the whole call is refused (422) and nothing is counted.
    Whether each item is scored as a classifier's."""
    errors: list[FieldError] = []
    classifier: list[bool] = []
    highest = max(entry.versions, default=0)
    for index, (item, found) in enumerate(zip(items, joined, strict=True)):
        loc = ("items", index)
        if item.version is not None and item.version > highest:
            errors.append(
                FieldError((*loc, "version"), f"model {entry.name!r} has no version {item.version}")
            )
            continue
        model = _kind_model(entry, found[0] if found else item.version)
        kind = model.signature.output_kind
        classifier.append(kind in CLASSIFIERS)
        values = [("actual", item.actual)]
        if found is not None:
            values.append(("prediction", found[1]))
        for field, value in values:
            problem = _problem(model, kind, value)
            if problem is not None:
                errors.append(FieldError((*loc, field), problem))
    if errors:
        summary = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors[:5])
        raise InvalidInput(summary, errors)
    return classifier


def _problem(model: LoadedModel, kind: OutputKind, value: Any) -> str | None:
    if kind in CLASSIFIERS and model.labels is not None:
        classes = model.labels
        if isinstance(value, float) or str(value) not in classes:
            return f"expected one of the classes {list(classes)}, got {value!r}"
        return None
    if kind is OutputKind.REGRESSOR:
        if isinstance(value, str) or not math.isfinite(value):
            return f"expected a finite number, got {value!r}"
        return None
    return (
        f"model {model.name!r} answers raw outputs: feedback is scored for classifiers and "
        "regressors only"
    )


def _count(
    book: FeedbackBook, model: str, item: FeedbackItem, found: Joined, classifier: bool
) -> dict[str, Any]:
    """Score the item, or count it as ignored: unknown (no version and prediction to score it
    on) or duplicate (this process scored its request id before)."""
    if found is None:
        outcome = book.ignore(model, item.version, "unknown")
        return {"request_id": item.request_id, "version": item.version, "outcome": outcome}
    version, prediction = found
    if not book.first_time(model, item.request_id):
        outcome = book.ignore(model, version, "duplicate")
    else:
        outcome = book.score(model, version, classifier, prediction, item.actual)
    return {"request_id": item.request_id, "version": version, "outcome": outcome}
