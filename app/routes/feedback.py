"""POST /feedback: the true outcomes of earlier answers, scored per version (app.feedback)."""

from __future__ import annotations

import asyncio
import math
from typing import Any, NamedTuple

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.body import parse_json, read_body, validate
from app.deps import RuntimeDep
from app.feedback import FeedbackBook
from app.predlog.answers import RecentAnswer, read_outputs
from app.responses import json_response, problem_docs
from app.schemas import FeedbackItem, FeedbackRequest, FeedbackResponse
from app.v2_schemas import inline_schema
from ml.errors import FieldError, InvalidInput, ModelNotReady
from ml.model import LoadedModel
from ml.outputs import Vocabulary
from ml.registry import ModelEntry
from ml.signature import OutputKind

router = APIRouter(tags=["feedback"])

CLASSIFIERS = (OutputKind.CLASSIFIER, OutputKind.CLASSIFIER_ZIPMAP)
# Classes named in a refusal, of each kind (names, values): a model may have thousands.
CLASSES_SHOWN = 20


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
    ids = [item.request_id for item in body.items]
    log = runtime.prediction_log
    answered = log.recent.find(ids) if log is not None else [None] * len(ids)
    book = runtime.feedback
    joined = [_joined(entry, item, found) for item, found in zip(body.items, answered, strict=True)]
    scorings = _check(entry, body.items, joined)
    results = [
        _count(book, entry.name, item, scoring)
        for item, scoring in zip(body.items, scorings, strict=True)
    ]
    if book.shared:  # other workers read this process's figures
        await asyncio.to_thread(book.publish, book.snapshot())
    scored = sum(r["outcome"] in ("correct", "incorrect", "scored") for r in results)
    return json_response(
        {"model": entry.name, "scored": scored, "ignored": len(results) - scored, "items": results}
    )


Joined = tuple[int, Any] | None  # the version that answered and its prediction, when known


def _joined(entry: ModelEntry, item: FeedbackItem, answered: RecentAnswer | None) -> Joined:
    """The item's version and prediction: as sent, else from this process's logged answer."""
    if item.version is not None and item.prediction is not None:
        return item.version, item.prediction
    if answered is None:
        return None
    model, prediction, outputs = answered
    if model.name != entry.name:
        return None
    version = item.version if item.version is not None else model.version
    if version != model.version:
        return None
    if item.prediction is not None:
        return version, item.prediction
    if prediction is None and outputs is not None:
        decoded = read_outputs(model, outputs)
        prediction = decoded.predictions[0] if decoded is not None and decoded.predictions else None
    if prediction is None:
        return None
    return version, prediction


def _kind_model(entry: ModelEntry, version: int | None) -> LoadedModel:
    """The loaded version whose answers say how feedback is scored: the one named if it is
    loaded, else the default."""
    model = entry.available(version) if version is not None else None
    model = model or entry.default
    if model is None:
        raise ModelNotReady(f"no version of model {entry.name!r} is available to score feedback")
    return model


class Scoring(NamedTuple):
    """How an item that fits the model is scored: as a classifier's or a regressor's, on its
    `actual` and `prediction` as the version's answers give them, and the version that gave
    the prediction (both None when unknown: the item is counted, not scored)."""

    version: int | None
    classifier: bool
    actual: Any
    prediction: Any


def _check(entry: ModelEntry, items: list[FeedbackItem], joined: list[Joined]) -> list[Scoring]:
    """Every item fits the model, or the whole call is refused (422) and nothing is counted.
    How each item is scored."""
    errors: list[FieldError] = []
    scorings: list[Scoring] = []
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
        actual, problem = _read(model, kind, item.actual)
        if problem is not None:
            errors.append(FieldError((*loc, "actual"), problem))
        version, prediction = found if found is not None else (None, None)
        if found is not None:
            prediction, problem = _read(model, kind, prediction)
            if problem is not None:
                errors.append(FieldError((*loc, "prediction"), problem))
        scorings.append(Scoring(version, kind in CLASSIFIERS, actual, prediction))
    if errors:
        summary = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors[:5])
        raise InvalidInput(summary, errors)
    return scorings


def _read(model: LoadedModel, kind: OutputKind, value: Any) -> tuple[Any, str | None]:
    """`value` as it is scored (a class as the version's answers give it: its name, when the
    client sent the graph's class value), or what is wrong with it."""
    vocabulary = model.vocabulary
    if kind in CLASSIFIERS and vocabulary is not None:
        answered = vocabulary.answered(value)
        if answered is None:
            return value, f"expected one of {_classes(vocabulary)}, got {value!r}"
        return answered, None
    if kind is OutputKind.REGRESSOR:
        if isinstance(value, str) or not math.isfinite(value):
            return value, f"expected a finite number, got {value!r}"
        return value, None
    return value, (
        f"model {model.name!r} answers raw outputs: feedback is scored for classifiers and "
        "regressors only"
    )


def _classes(vocabulary: Vocabulary) -> str:
    """The classes a client may send, for a message: their names, and their values in the
    graph where those differ, the first CLASSES_SHOWN of each."""
    if vocabulary.names is None:  # answered as they are
        return f"the classes {_some(vocabulary.classes)}"
    return f"the classes {_some(vocabulary.keys)} or their values {_some(vocabulary.classes)}"


def _some(values: tuple[Any, ...]) -> str:
    listed = ", ".join(map(repr, values[:CLASSES_SHOWN]))
    more = len(values) - CLASSES_SHOWN
    return f"[{listed}, ... {more} more]" if more > 0 else f"[{listed}]"


def _count(book: FeedbackBook, model: str, item: FeedbackItem, scoring: Scoring) -> dict[str, Any]:
    """Score the item, or count it as ignored: unknown (no version and prediction to score it
    on) or duplicate (this process scored its request id before)."""
    version = scoring.version
    if version is None:
        outcome = book.ignore(model, item.version, "unknown")
        return {"request_id": item.request_id, "version": item.version, "outcome": outcome}
    if not book.first_time(model, item.request_id):
        outcome = book.ignore(model, version, "duplicate")
    else:
        outcome = book.score(model, version, scoring.classifier, scoring.prediction, scoring.actual)
    return {"request_id": item.request_id, "version": version, "outcome": outcome}
