"""POST /predict and /predict/batch: the hot path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import State
from starlette.responses import Response

from app.body import read_json, validate
from app.problems import HTTPProblem
from app.responses import json_response, problem_docs, request_body_docs
from app.schemas import BatchRequest, BatchResponse, PredictRequest, PredictResponse
from ml.outputs import Predictions

router = APIRouter(tags=["predict"])

ERRORS = problem_docs(400, 404, 413, 415, 422, 503)

# A request header by name (case-insensitive), or None.
HeaderLookup = Callable[[str], str | None]


def _one(name: str, version: int, result: Predictions) -> dict[str, Any]:
    body: dict[str, Any] = {"model": name, "version": version}
    if result.outputs is not None:
        body["outputs"] = {k: v[0] for k, v in result.outputs.items()}
        return body
    assert result.predictions is not None
    body["prediction"] = result.predictions[0]
    if result.probabilities is not None:
        body["probabilities"] = result.probabilities[0]
    return body


def _many(name: str, version: int, result: Predictions) -> dict[str, Any]:
    body: dict[str, Any] = {"model": name, "version": version}
    if result.outputs is not None:
        body["outputs"] = result.outputs
        return body
    body["predictions"] = result.predictions
    if result.probabilities is not None:
        body["probabilities"] = result.probabilities
    return body


async def predict_one(state: State, payload: Any, header: HeaderLookup) -> dict[str, Any]:
    """The answer to a /predict body; raises the error that becomes a problem answer.
    `header(name)` reads a request header (a rollout's sticky header)."""
    body = validate(PredictRequest, payload)
    model, result = await state.registry.predict(
        body.model, body.version, [body.features], ("features",), header
    )
    return _one(model.name, model.version, result)


async def predict_many(state: State, payload: Any, header: HeaderLookup) -> dict[str, Any]:
    """The answer to a /predict/batch body."""
    body = validate(BatchRequest, payload)
    limit = state.settings.max_batch_rows
    if len(body.instances) > limit:
        message = f"at most {limit} rows per request (MAX_BATCH_ROWS); got {len(body.instances)}"
        raise HTTPProblem(422, "Invalid input", message, [{"loc": ["instances"], "msg": message}])
    model, result = await state.registry.predict(
        body.model, body.version, body.instances, ("instances",), header
    )
    return _many(model.name, model.version, result)


# In the served app these paths are answered by app.fastpath before FastAPI sees them, with the
# same functions; the routes document them and serve when the app runs without that wrapper.
@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=ERRORS,
    openapi_extra=request_body_docs(PredictRequest),
)
async def predict(request: Request) -> Response:
    """Predict one row, given as a list in feature order or an object by feature name."""
    state = request.app.state
    payload = await read_json(request, state.settings.max_body_bytes)
    return json_response(await predict_one(state, payload, request.headers.get))


@router.post(
    "/predict/batch",
    response_model=BatchResponse,
    responses=ERRORS,
    openapi_extra=request_body_docs(BatchRequest),
)
async def predict_batch(request: Request) -> Response:
    """Predict many rows; the answers keep the order of `instances`."""
    state = request.app.state
    payload = await read_json(request, state.settings.max_body_bytes)
    return json_response(await predict_many(state, payload, request.headers.get))
