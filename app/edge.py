"""The edge: the one ASGI layer between the server and everything else.

Every HTTP request passes here once. The edge gives it a request id and a deadline, answers the
hot routes (`POST /predict`, `POST /predict/batch`, and the Open Inference Protocol's
`POST /v2/models/{name}[/versions/{version}]/infer`) itself, hands every other request to the
FastAPI app, and records the answer in the metrics and the access log. Errors of the hot routes
are answered through the one table of app.errors, as FastAPI's handlers answer the rest.

The hot routes skip FastAPI's routing, middleware and request objects, which cost more per call
than the whole model run (benchmarks/compare.py measures the difference); they are documented in
the OpenAPI document from the same HotRoute and InferRoute entries that serve them (app.openapi).

    socket -> uvicorn -> Edge.__call__ -> read_body -> parse_json -> HotRoute.answer
           -> validate (envelope) -> registry.predict (ml/: the version, or the model's
              rollout) -> LoadedModel.predict -> orjson
    /v2 infer:  Edge.__call__ -> read_body -> app.v2_infer.answer -> app.dataplane.infer
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import v2_infer
from app.access import log_access, logging_access, well_formed_id
from app.body import parse_json, read_body, validate
from app.connections import HttpLimits
from app.dataplane.binary import HEADER_LENGTH
from app.dataplane.checks import too_many_rows
from app.dataplane.infer import HeaderLookup
from app.deadlines import RequestIds
from app.errors import HTTPProblem, error_response
from app.runtime import Runtime
from app.schemas import BatchRequest, BatchResponse, PredictRequest, PredictResponse
from ml.served import SERVED, Served

REQUEST_ID = b"x-request-id"
# A length, not chunked framing: clients and proxies see where the answer ends from its head.
CONTENT_LENGTH = b"content-length"
JSON_CONTENT_TYPE = (b"content-type", b"application/json")
BINARY_CONTENT_TYPE = (b"content-type", b"application/octet-stream")
BINARY_HEADER = HEADER_LENGTH.lower().encode()

_NOT_POST = HTTPProblem(405, "Method not allowed", "Method Not Allowed", headers={"Allow": "POST"})


# -- the hot routes ----------------------------------------------------------------------------


async def predict_one(runtime: Runtime, payload: Any, header: HeaderLookup) -> dict[str, Any]:
    """Predict one row, given as a list in feature order or an object by feature name."""
    body = validate(PredictRequest, payload)
    model, result = await runtime.registry.predict(
        body.model, body.version, [body.features], ("features",), header
    )
    answer: dict[str, Any] = {"model": model.name, "version": model.version}
    if result.outputs is not None:
        answer["outputs"] = {name: values[0] for name, values in result.outputs.items()}
        return answer
    assert result.predictions is not None
    answer["prediction"] = result.predictions[0]
    if result.probabilities is not None:
        answer["probabilities"] = result.probabilities[0]
    elif result.outliers is not None and result.scores is not None:
        answer["outlier"] = result.outliers[0]
        answer["score"] = result.scores[0]
    elif result.distances is not None:
        answer["distances"] = result.distances[0]
    return answer


async def predict_many(runtime: Runtime, payload: Any, header: HeaderLookup) -> dict[str, Any]:
    """Predict many rows; the answers keep the order of `instances`."""
    body = validate(BatchRequest, payload)
    too_many_rows(len(body.instances), runtime.settings.max_batch_rows, ("instances",))
    model, result = await runtime.registry.predict(
        body.model, body.version, body.instances, ("instances",), header
    )
    answer: dict[str, Any] = {"model": model.name, "version": model.version}
    if result.outputs is not None:
        answer["outputs"] = result.outputs
        return answer
    answer["predictions"] = result.predictions
    if result.probabilities is not None:
        answer["probabilities"] = result.probabilities
    elif result.scores is not None:
        answer["outliers"] = result.outliers
        answer["scores"] = result.scores
    elif result.distances is not None:
        answer["distances"] = result.distances
    return answer


@dataclass(frozen=True, slots=True)
class HotRoute:
    """A POST route the edge answers itself: what serves it, and what documents it."""

    path: str
    answer: Callable[[Runtime, Any, HeaderLookup], Awaitable[dict[str, Any]]]
    request: type[BaseModel]
    response: type[BaseModel]
    tag: str = "predict"


HOT_ROUTES = {
    route.path: route
    for route in (
        HotRoute("/predict", predict_one, PredictRequest, PredictResponse),
        HotRoute("/predict/batch", predict_many, BatchRequest, BatchResponse),
    )
}


# -- the edge ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Call:
    """What the edge knows of a request handed to FastAPI: its request id header, and what the
    route and the response tell it (model version, status) for the metrics and the access log."""

    request_id: bytes
    status: int = 0
    model: str = ""
    version: str = ""

    def tagging(self, send: Send) -> Send:
        """`send`, adding the request id header to the response and noting its status."""
        header = (REQUEST_ID, self.request_id)

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        return tagged


class Edge:
    """The served ASGI app: `api` (the FastAPI app) behind request ids, deadlines, metrics, the
    access log and the hot routes. `runtime` is what the lifespan fills and the routes share."""

    def __init__(self, api: ASGIApp, runtime: Runtime) -> None:
        self.api = api
        self.runtime = runtime
        settings = runtime.settings
        self.metrics = runtime.metrics
        self.max_body_bytes = settings.max_body_bytes
        self.timeout_s = settings.request_timeout_s
        self.deadlines = runtime.deadlines
        self.access_log_on = settings.access_log
        self.max_errors = settings.max_errors_listed
        self.http_limits = HttpLimits.from_settings(settings)  # for app.connections
        self.prediction_log = runtime.prediction_log
        self.ids = RequestIds()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan
            await self.api(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = b""
        for key, value in scope["headers"]:
            if key == REQUEST_ID:
                request_id = value
                break
        if not request_id or not well_formed_id(request_id):
            request_id = self.ids.next()
        path: str = scope["path"]
        hot = HOT_ROUTES.get(path)
        infer = None if hot is not None else v2_infer.match(path)
        call = Call(request_id)
        note = draw = None
        if self.prediction_log is not None and (hot is not None or infer is not None):
            draw = self.prediction_log.draw()
            if draw is not None:  # None: past every model's share, nothing to note
                note = Served()  # filled by the model that answers (ml.served)
                SERVED.set(note)
        task = self._current_task()
        self.deadlines.start(task)
        try:
            if infer is not None:
                await self._infer(call, infer, scope, receive, send)
            elif hot is None:
                try:
                    await self.api(scope, receive, call.tagging(send))
                except Exception as exc:
                    # Starlette re-raises what its error handler has answered (and logged);
                    # the answer stands, and the connection stays open for the next request.
                    if not call.status:
                        await self._fail(call, path, exc, scope, receive, send)
            elif scope["method"] != "POST":
                await self._fail(call, path, _NOT_POST, scope, receive, send)
            else:
                # Answered here rather than in a method of its own: one coroutine less per
                # request on the path that carries the traffic.
                try:
                    body = await read_body(scope, receive, self.max_body_bytes, json_only=True)
                    headers = _HeaderReader(scope).get
                    answer = await hot.answer(self.runtime, parse_json(body), headers)
                    call.model = answer["model"]
                    call.version = str(answer["version"])
                    # Encoded before the answer starts: a value that cannot be encoded is a
                    # 500 problem, not a 200 cut short.
                    content = orjson.dumps(answer)
                except Exception as exc:  # a bug too must answer problem+json, not a traceback
                    await self._fail(call, path, exc, scope, receive, send)
                else:
                    call.status = 200
                    headers = [
                        JSON_CONTENT_TYPE,
                        (CONTENT_LENGTH, str(len(content)).encode()),
                        (REQUEST_ID, request_id),
                    ]
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    await send({"type": "http.response.body", "body": content})
        except asyncio.CancelledError:
            if not self.deadlines.expired(task):
                raise  # cancelled by the server (shutdown), not by the timeout
            task.uncancel()
            if not call.status:  # nothing sent yet: a 504, not a dropped connection
                detail = f"the request took longer than REQUEST_TIMEOUT_S ({self.timeout_s:g} s)"
                timeout = HTTPProblem(504, "Gateway timeout", detail)
                await self._fail(call, path, timeout, scope, receive, send)
        finally:
            self.deadlines.finish(task)
            if hot is not None:
                route = path
            elif infer is not None:
                route = infer.route.path
            else:
                route = _route(scope)
            self._record(scope, route, call, time.perf_counter() - started, note, draw)

    def refuse(self, problem: HTTPProblem) -> ASGIApp:
        """An app that answers every request with `problem`, as the edge answers errors (request
        id, metrics, access log): app.connections' answer to a request beyond a limit."""

        async def refusing(scope: Scope, receive: Receive, send: Send) -> None:
            started = time.perf_counter()
            call = Call(self.ids.next())
            path: str = scope["path"]
            try:
                await self._fail(call, path, problem, scope, receive, send)
            finally:
                route = path if path in HOT_ROUTES else "unmatched"
                self._record(scope, route, call, time.perf_counter() - started)

        return refusing

    def refused(self, reason: str) -> None:
        """A connection or request refused by an HTTP limit (app.connections), counted."""
        self.metrics.refused("http", reason)

    async def _infer(
        self,
        call: Call,
        target: v2_infer.InferTarget,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """A /v2 infer request: JSON, or JSON followed by binary tensors, either way."""
        path = scope["path"]
        if scope["method"] != "POST":
            detail = f"Method Not Allowed: {scope['method']} {path}"
            not_post = HTTPProblem(405, "Method not allowed", detail, headers={"Allow": "POST"})
            await self._fail(call, path, not_post, scope, receive, send)
            return
        try:
            body = await read_body(scope, receive, self.max_body_bytes, json_only=False)
            reply = await v2_infer.answer(self.runtime, target, body, _HeaderReader(scope).get)
        except Exception as exc:  # a bug too must answer {"error"}, not a traceback
            await self._fail(call, path, exc, scope, receive, send)
            return
        call.model = reply.model
        call.version = str(reply.version)
        call.status = 200
        length = (CONTENT_LENGTH, str(len(reply.body)).encode())
        if reply.json_size is None:
            headers = [JSON_CONTENT_TYPE, length, (REQUEST_ID, call.request_id)]
        else:
            size = (BINARY_HEADER, str(reply.json_size).encode())
            headers = [BINARY_CONTENT_TYPE, length, size, (REQUEST_ID, call.request_id)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    async def _fail(
        self, call: Call, path: str, exc: Exception, scope: Scope, receive: Receive, send: Send
    ) -> None:
        response = error_response(path, exc, self.max_errors)
        call.status = response.status_code
        response.raw_headers.append((REQUEST_ID, call.request_id))
        await response(scope, receive, send)

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

    def _record(
        self,
        scope: Scope,
        route: str,
        call: Call,
        seconds: float,
        note: Served | None = None,
        draw: float | None = None,
    ) -> None:
        status = call.status or 500  # no answer started: the connection was dropped
        self.metrics.answered(route, call.model, call.version, status, seconds)
        if note is not None and draw is not None and self.prediction_log is not None:
            request_id = call.request_id.decode()
            lookup = _HeaderReader(scope).get
            self.prediction_log.finish(
                note, draw, request_id, "http", route, status, seconds, lookup
            )
        if self.access_log_on and logging_access():
            client = scope.get("client")
            log_access(
                client=client[0] if client else None,
                method=scope["method"],
                path=scope["path"],
                route=route,
                status=status,
                seconds=seconds,
                request_id=call.request_id.decode(),
                model=call.model,
                version=call.version,
            )


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


def _route(scope: Scope) -> str:
    """The route template FastAPI matched (bounded label values), or "unmatched"."""
    matched = scope.get("route")
    return getattr(matched, "path", None) or "unmatched"
