"""Every error, as each protocol family answers it: one table, one lookup; no traceback leaves.

- The service's own routes answer RFC 9457 problem+json.
- The Open Inference Protocol over HTTP (under /v2) answers `{"error": "..."}` with the same
  status, except that a request that does not fit the model is a 400, as the protocol and Triton
  have it.
- gRPC (the Open Inference Protocol's `GRPCInferenceService`) answers a status code and a
  message: `Failure.grpc` and `Failure.detail`.

What becomes what:

    ml.errors.ServingError   the row of SERVING_ERRORS for its class
    HTTPProblem              raised by the HTTP layer (body, content type, auth): its own status
                             and title; its gRPC code by status (GRPC_BY_STATUS)
    RequestValidationError   a 422 naming each field (FastAPI's path and query parameters)
    HTTPException            Starlette's 404 and 405 for unknown routes and methods
    anything else            a 500 that says only that the error is logged
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from itertools import islice
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

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
    summary,
)
from ml.served import SERVED

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
V2_PREFIX = "/v2"


class GrpcCode(IntEnum):
    """gRPC status codes, by the names and numbers of `grpc.StatusCode` (which is
    `grpc.StatusCode[code.name]`), so that this table needs no grpcio."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


# ml error class -> (HTTP status, problem title, gRPC code)
SERVING_ERRORS: dict[type[ServingError], tuple[int, str, GrpcCode]] = {
    ModelNotFound: (404, "Model not found", GrpcCode.NOT_FOUND),
    ModelNotReady: (503, "Model not ready", GrpcCode.UNAVAILABLE),
    StoreUnavailable: (503, "Model store unavailable", GrpcCode.UNAVAILABLE),
    InvalidInput: (422, "Invalid input", GrpcCode.INVALID_ARGUMENT),
    Overloaded: (503, "Overloaded", GrpcCode.RESOURCE_EXHAUSTED),
    InferenceFailed: (500, "Inference failed", GrpcCode.INTERNAL),
}

# The HTTP layer's own errors, by status.
GRPC_BY_STATUS: dict[int, GrpcCode] = {
    400: GrpcCode.INVALID_ARGUMENT,
    401: GrpcCode.UNAUTHENTICATED,
    403: GrpcCode.PERMISSION_DENIED,
    404: GrpcCode.NOT_FOUND,
    405: GrpcCode.UNIMPLEMENTED,
    413: GrpcCode.RESOURCE_EXHAUSTED,
    415: GrpcCode.INVALID_ARGUMENT,
    422: GrpcCode.INVALID_ARGUMENT,
    500: GrpcCode.INTERNAL,
    503: GrpcCode.UNAVAILABLE,
    504: GrpcCode.DEADLINE_EXCEEDED,
}

HTTP_TITLES = {404: "Not found", 405: "Method not allowed"}
INTERNAL_DETAIL = "the server failed; the error is logged"


class HTTPProblem(Exception):
    """An error raised by the HTTP layer itself (body, content type, auth, probes)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: Iterable[Mapping[str, Any]] = (),
        headers: Mapping[str, str] | None = None,
        count: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = [
            {"loc": list(e["loc"]), "msg": str(e["msg"])} for e in islice(errors, MAX_FIELD_ERRORS)
        ]
        self.count = len(self.errors) if count is None else max(count, len(self.errors))
        self.headers = dict(headers or {})


@dataclass(frozen=True, slots=True)
class Failure:
    """One error, before any protocol writes it: the HTTP status and title, the gRPC code, what
    went wrong, the fields at fault (`{"loc", "msg"}`, the first MAX_FIELD_ERRORS), how many
    there are in all, and headers (Retry-After)."""

    status: int
    title: str
    detail: str
    grpc: GrpcCode
    errors: Sequence[Mapping[str, Any]] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    count: int = 0


def failure(exc: BaseException, where: str = "") -> Failure:
    """The table lookup; an error of no known kind is logged here (`where` it happened) and
    becomes a bare 500. A request noted for the prediction log notes what it was told."""
    found = _failure(exc, where)
    note = SERVED.get()
    if note is not None:
        note.error = found.detail
    return found


def _failure(exc: BaseException, where: str) -> Failure:
    if isinstance(exc, ServingError):
        status, title, code = SERVING_ERRORS.get(
            type(exc), (500, "Serving error", GrpcCode.INTERNAL)
        )
        errors = [{"loc": list(e.loc), "msg": e.msg} for e in getattr(exc, "errors", ())]
        count = getattr(exc, "count", len(errors))
        return Failure(status, title, exc.detail, code, errors, _retry_after(exc), count)
    if isinstance(exc, HTTPProblem):
        code = GRPC_BY_STATUS.get(exc.status, GrpcCode.UNKNOWN)
        return Failure(exc.status, exc.title, exc.detail, code, exc.errors, exc.headers, exc.count)
    log.error("unhandled error%s", f" on {where}" if where else "", exc_info=exc)
    return Failure(500, "Internal error", INTERNAL_DETAIL, GrpcCode.INTERNAL)


def _retry_after(exc: ServingError) -> dict[str, str]:
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is None:
        return {}
    return {"Retry-After": str(max(1, math.ceil(retry_after)))}


def is_v2(path: str) -> bool:
    """Whether `path` belongs to the Open Inference Protocol, whose errors are `{"error"}`."""
    return path == V2_PREFIX or path.startswith(V2_PREFIX + "/")


def problem_body(failed: Failure, max_errors: int = MAX_FIELD_ERRORS) -> bytes:
    """problem+json; `type` is a stable slug of the title clients can branch on. `errors` lists
    the first `max_errors` fields at fault (MAX_ERRORS_LISTED), `error_count` counts them all."""
    body = {
        "type": "/problems/" + failed.title.lower().replace(" ", "-"),
        "title": failed.title,
        "status": failed.status,
        "detail": failed.detail,
        "errors": [{"loc": list(e["loc"]), "msg": e["msg"]} for e in failed.errors[:max_errors]],
        "error_count": max(failed.count, len(failed.errors)),
    }
    return orjson.dumps(body)


def problem_response(failed: Failure, max_errors: int = MAX_FIELD_ERRORS) -> Response:
    """The problem+json answer of `failed` (problem_body)."""
    return Response(
        problem_body(failed, max_errors),
        status_code=failed.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=failed.headers,
    )


def v2_response(failed: Failure) -> Response:
    """The Open Inference Protocol's error body; its 422s are 400s (a request that does not fit)."""
    return Response(
        orjson.dumps({"error": failed.detail}),
        status_code=400 if failed.status == 422 else failed.status,
        media_type="application/json",
        headers=failed.headers,
    )


def error_response(path: str, exc: BaseException, max_errors: int = MAX_FIELD_ERRORS) -> Response:
    """The answer to `exc` on an HTTP route: problem+json listing at most `max_errors` fields,
    or `{"error"}` under /v2."""
    failed = failure(exc, path)
    return v2_response(failed) if is_v2(path) else problem_response(failed, max_errors)


def validation_problem(raw: Sequence[Mapping[str, Any]], count: int | None = None) -> HTTPProblem:
    """pydantic's errors as a 422 naming each field, FastAPI's "body"/"path" prefix dropped;
    `count` when `raw` holds only the first of them."""
    errors = []
    for err in raw[:MAX_FIELD_ERRORS]:
        loc = list(err.get("loc", ()))
        if loc and loc[0] in ("body", "path", "query"):
            loc = loc[1:]
        errors.append({"loc": loc, "msg": str(err.get("msg", ""))})
    total = len(raw) if count is None else count
    return HTTPProblem(422, "Invalid input", summarize(errors, total), errors, count=total)


def summarize(errors: Sequence[Mapping[str, Any]], count: int | None = None) -> str:
    """The first few errors as one line: `loc: msg; loc: msg (and N more)`."""
    found = [FieldError(tuple(e["loc"]), str(e["msg"])) for e in errors[:5]]
    return summary(found, len(errors) if count is None else count)


def install_error_handlers(app: FastAPI, max_errors: int = MAX_FIELD_ERRORS) -> None:
    """Every error raised in a FastAPI route is answered through the table, listing at most
    `max_errors` fields at fault."""

    async def on_error(request: Request, exc: Exception) -> Response:
        path = request.url.path
        if isinstance(exc, RequestValidationError):
            exc = validation_problem(exc.errors())
        elif isinstance(exc, StarletteHTTPException):
            detail = str(exc.detail)
            if is_v2(path) and exc.status_code in (404, 405):
                detail = f"{detail}: {request.method} {path}"
            title = HTTP_TITLES.get(exc.status_code, "HTTP error")
            exc = HTTPProblem(exc.status_code, title, detail, headers=exc.headers)
        elif not isinstance(exc, ServingError | HTTPProblem):
            log.error("unhandled error on %s %s", request.method, path, exc_info=exc)
            exc = HTTPProblem(500, "Internal error", INTERNAL_DETAIL)
        return error_response(path, exc, max_errors)

    for kind in (
        ServingError,
        HTTPProblem,
        RequestValidationError,
        StarletteHTTPException,
        Exception,
    ):
        app.add_exception_handler(kind, on_error)
