"""The outermost layer: request ids, the access log, metrics, and the request timeout.

It wraps every HTTP request, the fast path included, so it is written against ASGI directly
and does as little as it can per request: no parsing, one id, one clock, two metric updates,
and one log record when the access log is on.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import threading
import time
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import is_v2, v2_error_response
from app.logs import ACCESS_LOGGER
from app.metrics import Metrics
from app.problems import problem_response

# Set by the handlers once a request is resolved to a model version (bounded label values:
# only names the registry knows, never what a client typed).
MODEL_KEY = "model_server.model"
VERSION_KEY = "model_server.version"
ROUTE_KEY = "model_server.route"
# Set here for the app inside: the response header that carries the request id.
REQUEST_ID_HEADER_KEY = "model_server.request_id_header"
# Set by whoever starts the response: its status, for the metrics and the access log.
STATUS_KEY = "model_server.status"

_GIVEN_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
access_log = logging.getLogger(ACCESS_LOGGER)


class RequestIds:
    """Ids unique across workers and restarts, without a uuid per request (~5 µs)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(5).hex()
        self._counter = itertools.count(1)

    def next(self) -> bytes:
        return f"{self._prefix}-{next(self._counter):x}".encode()


def _route(scope: Scope) -> str:
    route = scope.get(ROUTE_KEY)
    if route is None:
        matched = scope.get("route")
        route = getattr(matched, "path", None) or "unmatched"
    return route


def tagging_send(scope: Scope, send: Send) -> Send:
    """`send`, adding the request id header to the response and noting its status in `scope`:
    for responders that do not do it themselves."""
    header = scope[REQUEST_ID_HEADER_KEY]

    async def tagged(message: Message) -> None:
        if message["type"] == "http.response.start":
            scope[STATUS_KEY] = message["status"]
            message["headers"] = [*message.get("headers", ()), header]
        await send(message)

    return tagged


def _timeout_answer(path: str, timeout_s: float) -> Response:
    detail = f"the request took longer than REQUEST_TIMEOUT_S ({timeout_s:g} s)"
    if is_v2(path):
        return v2_error_response(504, detail)
    return problem_response(504, "Gateway timeout", detail)


class Deadlines:
    """Cancels requests that outlive the timeout: one task looks every tick, which costs far
    less per request than a timer of its own (asyncio.timeout: ~5 µs)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.tick_s = min(0.5, timeout_s / 10)
        self._running: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def start(self, task: asyncio.Task[Any]) -> None:
        self._running[task] = time.monotonic() + self.timeout_s
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def finish(self, task: asyncio.Task[Any]) -> None:
        self._running.pop(task, None)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether `task` was cancelled here, for running too long (asked once per task)."""
        if task in self._expired:
            self._expired.discard(task)
            return True
        return False

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            now = time.monotonic()
            for task, deadline in list(self._running.items()):
                if deadline <= now:
                    del self._running[task]
                    self._expired.add(task)
                    task.cancel()


class ObservedApp:
    """Wraps the served app; everything it measures goes to `metrics` and the access log.

    With `inner_tags_responses`, the app inside adds the request id header and notes the status
    itself (app.fastpath answers its hot routes so, without a send wrapper in between);
    otherwise every response is tagged here.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        timeout_s: float,
        access_log_on: bool,
        inner_tags_responses: bool = False,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.deadlines = Deadlines(timeout_s)
        self.access_log_on = access_log_on
        self.inner_tags_responses = inner_tags_responses
        self.ids = RequestIds()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)  # state, routes, openapi() of the app inside

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = b""
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                request_id = value
                break
        if not request_id or not _GIVEN_ID.match(request_id):
            request_id = self.ids.next()
        scope[REQUEST_ID_HEADER_KEY] = (b"x-request-id", request_id)
        task = self._current_task()
        self.deadlines.start(task)
        try:
            await self.app(
                scope, receive, send if self.inner_tags_responses else tagging_send(scope, send)
            )
        except asyncio.CancelledError:
            if not self.deadlines.expired(task):
                raise  # cancelled by the server (shutdown), not by the timeout
            task.uncancel()
            if STATUS_KEY not in scope:  # nothing sent yet: a 504, not a dropped connection
                answer = _timeout_answer(scope["path"], self.timeout_s)
                await answer(scope, receive, tagging_send(scope, send))
        finally:
            self.deadlines.finish(task)
            seconds = time.perf_counter() - started
            self._record(scope, scope.get(STATUS_KEY, 500), seconds, request_id)

    def _current_task(self) -> asyncio.Task[Any]:
        # Given the loop, current_task() skips get_running_loop(), which makes a getpid()
        # system call on every call in Python 3.11. The loop is remembered with its thread:
        # under uvicorn there is one, but test clients run loops of their own, in other threads.
        if self._loop_thread == threading.get_ident():
            task = asyncio.current_task(self._loop)
            if task is not None:
                return task
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        task = asyncio.current_task(self._loop)
        assert task is not None  # uvicorn runs every request in a task of its own
        return task

    def _record(self, scope: Scope, status: int, seconds: float, request_id: bytes) -> None:
        route = _route(scope)
        model = scope.get(MODEL_KEY, "")
        version = scope.get(VERSION_KEY, "")
        self.metrics.answered(route, model, version, status, seconds)
        if self.access_log_on and access_log.isEnabledFor(logging.INFO):
            client = scope.get("client")
            access_log.info(
                '%s "%s %s" %d %.2fms',
                client[0] if client else "-",
                scope["method"],
                scope["path"],
                status,
                seconds * 1000,
                extra={
                    "request_id": request_id.decode(),
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "model": model or None,
                    "version": version or None,
                    "client": client[0] if client else None,
                },
            )
