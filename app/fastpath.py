"""Answers the predict routes straight from ASGI, in front of FastAPI.

FastAPI's routing, middleware and request objects cost more per call than the whole model run
(measured in benchmarks/: the simplest FastAPI GET tops out near half the rate of this path on
our 2 cores). The predict routes are the only hot ones, so they are answered here, by the same
functions the FastAPI routes call, and every other path, the lifespan included, goes to FastAPI.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.datastructures import State
from starlette.types import Message, Receive, Scope, Send

from app.body import body_too_large, parse_json, require_json
from app.errors import serving_error_response
from app.observe import (
    MODEL_KEY,
    REQUEST_ID_HEADER_KEY,
    ROUTE_KEY,
    STATUS_KEY,
    VERSION_KEY,
    tagging_send,
)
from app.problems import HTTPProblem, problem_response
from app.routes.predict import HeaderLookup, predict_many, predict_one
from ml.errors import ServingError

log = logging.getLogger(__name__)

Handler = Callable[[State, Any, HeaderLookup], Awaitable[dict[str, Any]]]

HANDLERS: dict[str, Handler] = {"/predict": predict_one, "/predict/batch": predict_many}
JSON_CONTENT_TYPE = (b"content-type", b"application/json")


class FastPathApp:
    """The predict routes here, everything else to `app`; inside ObservedApp, whose request id
    header it adds to every response and whose status key it sets (inner_tags_responses)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:
        # Tests and tools reach for the FastAPI app's state, routes and openapi().
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        handler = HANDLERS.get(scope["path"]) if scope["method"] == "POST" else None
        if handler is None:
            await self.app(scope, receive, tagging_send(scope, send))
            return
        # The predict routes, answered here rather than in a method of their own: one coroutine
        # less per request on the path that carries the traffic.
        scope[ROUTE_KEY] = scope["path"]
        state: State = self.app.state
        try:
            body = await _read_body(scope, receive, state.settings.max_body_bytes)
            answer = await handler(state, parse_json(body), _HeaderReader(scope).get)
        except ServingError as exc:
            failed = serving_error_response(exc)
        except HTTPProblem as exc:
            failed = exc.response()
        except Exception:  # a bug must still answer problem+json, never a traceback
            log.exception("unhandled error on POST %s", scope["path"])
            failed = problem_response(
                500, "Internal error", "the server failed; the error is logged"
            )
        else:
            scope[MODEL_KEY] = answer["model"]
            scope[VERSION_KEY] = str(answer["version"])
            scope[STATUS_KEY] = 200
            headers = [JSON_CONTENT_TYPE, scope[REQUEST_ID_HEADER_KEY]]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": orjson.dumps(answer)})
            return
        scope[STATUS_KEY] = failed.status_code
        failed.raw_headers.append(scope[REQUEST_ID_HEADER_KEY])
        await failed(scope, receive, send)


class _HeaderReader:
    """Reads one request header of the scope on demand; made per request, read only when a
    model's rollout routes by a header."""

    __slots__ = ("scope",)

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def get(self, name: str) -> str | None:
        wanted = name.lower().encode("latin-1")
        for key, value in self.scope["headers"]:
            if key == wanted:
                return value.decode("latin-1")  # type: ignore[no-any-return]
        return None


async def _read_body(scope: Scope, receive: Receive, max_bytes: int) -> bytes:
    content_type = b""
    declared: int | None = None
    for key, value in scope["headers"]:
        if key == b"content-type":
            content_type = value
        elif key == b"content-length" and value.isdigit():
            declared = int(value)
    if content_type != b"application/json":  # the usual header needs no parsing
        require_json(content_type.decode("latin-1"))
    if declared is not None and declared > max_bytes:
        raise body_too_large(max_bytes, declared)
    message: Message = await receive()
    body = message.get("body", b"")
    if len(body) > max_bytes:  # a chunked body may arrive whole in one message
        raise body_too_large(max_bytes)
    if not message.get("more_body", False):
        return body
    # Chunked or large bodies: collect, counting as we go, whatever Content-Length said.
    parts = bytearray(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        parts += message.get("body", b"")
        if len(parts) > max_bytes:
            raise body_too_large(max_bytes)
    return bytes(parts)
