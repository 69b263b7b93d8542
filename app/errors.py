"""Maps every error to an answer, in one table; no traceback ever leaves.

The service's own routes answer RFC 9457 problem+json; the Open Inference Protocol routes
(under /v2) answer its error body `{"error": "..."}`, with the same status except that a request
that does not fit the model is a 400 there, as the protocol and Triton have it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.problems import HTTPProblem, problem_response
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

# ml error class -> (HTTP status, problem title)
SERVING_ERRORS: dict[type[ServingError], tuple[int, str]] = {
    ModelNotFound: (404, "Model not found"),
    ModelNotReady: (503, "Model not ready"),
    StoreUnavailable: (503, "Model store unavailable"),
    InvalidInput: (422, "Invalid input"),
    Overloaded: (503, "Overloaded"),
    InferenceFailed: (500, "Inference failed"),
}


def serving_error_response(exc: ServingError) -> Response:
    status, title = SERVING_ERRORS.get(type(exc), (500, "Serving error"))
    errors = [{"loc": e.loc, "msg": e.msg} for e in getattr(exc, "errors", [])]
    return problem_response(status, title, exc.detail, errors, _retry_after(exc))


def _retry_after(exc: ServingError) -> dict[str, str]:
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is None:
        return {}
    return {"Retry-After": str(max(1, math.ceil(retry_after)))}


V2_PREFIX = "/v2"


def is_v2(path: str) -> bool:
    """Whether `path` belongs to the Open Inference Protocol, whose errors are `{"error"}`."""
    return path == V2_PREFIX or path.startswith(V2_PREFIX + "/")


def v2_error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    """The Open Inference Protocol's error body; its 422s are 400s (a request that does not fit)."""
    status = 400 if status == 422 else status
    return Response(
        orjson.dumps({"error": message}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def validation_errors(raw: list[dict[str, object]]) -> list[dict[str, object]]:
    """pydantic's errors as {loc, msg}, with FastAPI's "body"/"path" prefix dropped."""
    errors = []
    for err in raw:
        loc = list(err.get("loc", ()))  # type: ignore[call-overload]
        if loc and loc[0] in ("body", "path", "query"):
            loc = loc[1:]
        errors.append({"loc": loc, "msg": str(err.get("msg", ""))})
    return errors


def summarize(errors: list[dict[str, object]]) -> str:
    parts = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors[:5]]  # type: ignore[call-overload]
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def install_error_handlers(app: FastAPI) -> None:
    """Every error the app can raise becomes a problem+json answer, or `{"error"}` under /v2."""

    def answer(
        request: Request,
        status: int,
        title: str,
        detail: str,
        errors: list[dict[str, object]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        if is_v2(request.url.path):
            return v2_error_response(status, detail, headers)
        return problem_response(status, title, detail, errors or (), headers)

    async def on_serving_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServingError)
        if is_v2(request.url.path):
            status = SERVING_ERRORS.get(type(exc), (500, ""))[0]
            return v2_error_response(status, exc.detail, _retry_after(exc))
        return serving_error_response(exc)

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPProblem)
        return answer(request, exc.status, exc.title, exc.detail, exc.errors, exc.headers)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = validation_errors(list(exc.errors()))
        return answer(request, 422, "Invalid input", summarize(errors), errors)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        detail = str(exc.detail)
        if is_v2(request.url.path) and exc.status_code in (404, 405):
            detail = f"{detail}: {request.method} {request.url.path}"
        return answer(request, exc.status_code, title, detail, headers=exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        detail = "the server failed; the error is logged"
        return answer(request, 500, "Internal error", detail)

    app.add_exception_handler(ServingError, on_serving_error)
    app.add_exception_handler(HTTPProblem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
