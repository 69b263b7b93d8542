"""The one error table: every error of the model layer and of the HTTP layer has one answer per
protocol family (problem+json, the V2 `{"error"}` body, a gRPC status code)."""

from __future__ import annotations

import inspect

import orjson
import pytest

import ml.errors
from app.errors import (
    SERVING_ERRORS,
    GrpcCode,
    HTTPProblem,
    error_response,
    failure,
    problem_body,
    problem_response,
    v2_response,
)
from ml.errors import (
    MAX_FIELD_ERRORS,
    FieldError,
    InferenceFailed,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    ServingError,
    StoreUnavailable,
)

# gRPC's status codes as its specification numbers them (doc/statuscodes.md).
GRPC_SPEC = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
]


def test_grpc_codes_are_the_specification_s():
    assert [(code.name, code.value) for code in GrpcCode] == list(
        zip(GRPC_SPEC, range(len(GRPC_SPEC)), strict=True)
    )


def test_every_error_of_the_model_layer_has_a_row():
    kinds = {
        cls
        for _, cls in inspect.getmembers(ml.errors, inspect.isclass)
        if issubclass(cls, ServingError) and cls is not ServingError
    }

    assert kinds == set(SERVING_ERRORS)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ModelNotFound("no such model"), 404, GrpcCode.NOT_FOUND),
        (ModelNotReady("loading"), 503, GrpcCode.UNAVAILABLE),
        (StoreUnavailable("gone"), 503, GrpcCode.UNAVAILABLE),
        (InvalidInput("bad row"), 422, GrpcCode.INVALID_ARGUMENT),
        (Overloaded("queue full"), 503, GrpcCode.RESOURCE_EXHAUSTED),
        (InferenceFailed("model bug"), 500, GrpcCode.INTERNAL),
        (HTTPProblem(400, "Malformed JSON", "broken"), 400, GrpcCode.INVALID_ARGUMENT),
        (HTTPProblem(401, "Unauthorized", "token"), 401, GrpcCode.UNAUTHENTICATED),
        (HTTPProblem(403, "Forbidden", "off"), 403, GrpcCode.PERMISSION_DENIED),
        (HTTPProblem(413, "Body too large", "big"), 413, GrpcCode.RESOURCE_EXHAUSTED),
        (HTTPProblem(415, "Unsupported media type", "xml"), 415, GrpcCode.INVALID_ARGUMENT),
        (HTTPProblem(504, "Gateway timeout", "slow"), 504, GrpcCode.DEADLINE_EXCEEDED),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_each_error_has_one_status_and_one_grpc_code(error, status, code):
    failed = failure(error)

    assert (failed.status, failed.grpc) == (status, code)
    assert failed.detail == str(error)


def test_retry_after_is_whole_seconds_rounded_up():
    assert failure(ModelNotReady("loading", retry_after=1.2)).headers == {"Retry-After": "2"}
    assert failure(Overloaded("full", retry_after=0.1)).headers == {"Retry-After": "1"}
    assert failure(ModelNotReady("failed")).headers == {}


def test_field_errors_travel_with_the_failure():
    failed = failure(InvalidInput("bad", [FieldError(("instances", 3, "x"), "expected a number")]))

    assert list(failed.errors) == [{"loc": ["instances", 3, "x"], "msg": "expected a number"}]


def test_an_unknown_error_is_a_bare_logged_500(caplog):
    failed = failure(RuntimeError("/secret/path exploded"))

    assert (failed.status, failed.grpc) == (500, GrpcCode.INTERNAL)
    assert "secret" not in failed.detail
    assert "exploded" in caplog.text


def test_the_same_failure_in_each_http_family():
    error = InvalidInput("x: expected a number", [FieldError(("x",), "expected a number")])

    problem = problem_response(failure(error))
    v2 = v2_response(failure(error))

    assert (problem.status_code, problem.media_type) == (422, "application/problem+json")
    assert orjson.loads(problem.body)["errors"] == [{"loc": ["x"], "msg": "expected a number"}]
    assert (v2.status_code, orjson.loads(v2.body)) == (400, {"error": "x: expected a number"})


@pytest.mark.parametrize(
    ("path", "media_type"),
    [("/predict", "application/problem+json"), ("/v2/models/iris/infer", "application/json")],
)
def test_the_path_picks_the_family(path, media_type):
    response = error_response(path, ModelNotFound("no model"))

    assert (response.status_code, response.media_type) == (404, media_type)


def test_a_problem_lists_at_most_max_errors_and_counts_them_all():
    errors = [FieldError(("f", i), "unknown feature") for i in range(300)]
    failed = failure(InvalidInput("many", errors, count=300_000))

    body = orjson.loads(problem_body(failed, max_errors=7))

    assert [e["loc"] for e in body["errors"]] == [["f", i] for i in range(7)]
    assert body["error_count"] == 300_000
    assert len(failed.errors) == MAX_FIELD_ERRORS  # what ml keeps, whatever it is given
