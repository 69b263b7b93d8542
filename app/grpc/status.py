"""Errors as gRPC status codes: the one table of the gRPC edge.

The model layer's errors (ml.errors) and the protocol checks' problems (app.problems, raised
by app.v2_codec's checks with an HTTP status) each map to one code; the message is the same
detail that HTTP answers carry, naming the input and what the model expects.
"""

from __future__ import annotations

import logging

import grpc

from app.problems import HTTPProblem
from ml.errors import (
    InferenceFailed,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    ServingError,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

SERVING_ERROR_CODES: dict[type[ServingError], grpc.StatusCode] = {
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    ModelNotReady: grpc.StatusCode.UNAVAILABLE,
    StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    InferenceFailed: grpc.StatusCode.INTERNAL,
}
HTTP_STATUS_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}


def grpc_status(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status code and message that answer `exc`; an unexpected error is logged, and its
    answer says only that."""
    if isinstance(exc, ServingError):
        return SERVING_ERROR_CODES.get(type(exc), grpc.StatusCode.INTERNAL), exc.detail
    if isinstance(exc, HTTPProblem):
        return HTTP_STATUS_CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.detail
    log.error("unhandled error in a gRPC call", exc_info=exc)
    return grpc.StatusCode.INTERNAL, "the server failed; the error is logged"
