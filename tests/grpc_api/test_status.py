"""The gRPC edge's error table (app.grpc.status): every ml error and protocol problem has a code."""

from __future__ import annotations

import grpc
import pytest

from app.errors import HTTPProblem
from app.grpc.status import grpc_status
from ml.errors import (
    InferenceFailed,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    ServingError,
    StoreUnavailable,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ModelNotFound("model 'x' not found"), grpc.StatusCode.NOT_FOUND),
        (ModelNotReady("loading", retry_after=1.0), grpc.StatusCode.UNAVAILABLE),
        (StoreUnavailable("gone"), grpc.StatusCode.UNAVAILABLE),
        (InvalidInput("input 'x' takes float32"), grpc.StatusCode.INVALID_ARGUMENT),
        (Overloaded("the batching queue is full (4 rows)"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (InferenceFailed("model x failed"), grpc.StatusCode.INTERNAL),
        (
            HTTPProblem(400, "Bad request", "input 'x' is given twice"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (HTTPProblem(413, "Too large", "over MAX_BODY_BYTES"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    ],
)
def test_each_error_has_its_code_and_keeps_its_message(error, code):
    assert grpc_status(error) == (code, str(error))


def test_every_serving_error_is_in_the_table():
    for kind in ServingError.__subclasses__():
        assert grpc_status(kind("x"))[0] is not grpc.StatusCode.INTERNAL or kind is InferenceFailed


def test_an_unexpected_error_is_logged_and_not_shown(caplog):
    code, message = grpc_status(KeyError("secret internals"))
    assert code is grpc.StatusCode.INTERNAL
    assert "secret" not in message
    assert "secret internals" in caplog.text
