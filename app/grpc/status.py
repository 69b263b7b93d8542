"""Errors as gRPC status codes, from the one error table (app.errors): the same code and the same
detail, naming the input and what the model expects, as the HTTP answers carry."""

from __future__ import annotations

import grpc

from app.errors import failure


def grpc_status(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status code and message that answer `exc`; an unexpected error is logged by the
    table, and its answer says only that."""
    failed = failure(exc, "a gRPC call")
    return grpc.StatusCode[failed.grpc.name], failed.detail
