"""Maps every error to a problem+json answer, in one table; no traceback ever leaves."""

from __future__ import annotations

import logging
import math

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
)

log = logging.getLogger(__name__)

# ml error class -> (HTTP status, problem title)
SERVING_ERRORS: dict[type[ServingError], tuple[int, str]] = {
    ModelNotFound: (404, "Model not found"),
    ModelNotReady: (503, "Model not ready"),
    InvalidInput: (422, "Invalid input"),
    Overloaded: (503, "Overloaded"),
    InferenceFailed: (500, "Inference failed"),
}


def serving_error_response(exc: ServingError) -> Response:
    status, title = SERVING_ERRORS.get(type(exc), (500, "Serving error"))
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    errors = [{"loc": e.loc, "msg": e.msg} for e in getattr(exc, "errors", [])]
    return problem_response(status, title, exc.detail, errors, headers)


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
    """Every error the app can raise becomes a problem+json answer."""

    async def on_serving_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServingError)
        return serving_error_response(exc)

    async def on_problem(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPProblem)
        return problem_response(exc.status, exc.title, exc.detail, exc.errors, exc.headers)

    async def on_validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = validation_errors(list(exc.errors()))
        return problem_response(422, "Invalid input", summarize(errors), errors)

    async def on_http(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        return problem_response(exc.status_code, title, str(exc.detail), headers=exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem_response(500, "Internal error", "the server failed; the error is logged")

    app.add_exception_handler(ServingError, on_serving_error)
    app.add_exception_handler(HTTPProblem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
