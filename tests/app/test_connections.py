"""app.connections: the guarded HTTP protocol, fed bytes by hand on a transport that records what
is written (the real sockets are tests/process/test_hostile_clients.py's)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from app import connections
from app.connections import GuardedHttp, HttpLimits, environment_limits
from app.errors import HTTPProblem, error_response

LIMITS = HttpLimits(
    max_header_bytes=2048,
    max_header_count=10,
    header_timeout_s=0.2,
    body_timeout_s=0.2,
    max_connections=2,
    drain_idle_s=0.2,
)
REQUEST = b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}"


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.eof = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8000) if name in ("sockname", "peername") else default

    def write(self, data: Any) -> None:
        self.written += data

    def write_eof(self) -> None:
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Served:
    """The app: answers 200 `{}`, and refuses as app.edge.Edge does, counting refusals."""

    http_limits = LIMITS

    def __init__(self) -> None:
        self.refusals: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        length = (b"content-length", b"2")
        await send({"type": "http.response.start", "status": 200, "headers": [length]})
        await send({"type": "http.response.body", "body": b"{}"})

    def refuse(self, problem: HTTPProblem) -> Any:
        async def refusing(scope: Any, receive: Any, send: Any) -> None:
            await error_response(scope["path"], problem)(scope, receive, send)

        return refusing

    def refused(self, reason: str) -> None:
        self.refusals.append(reason)


def in_loop(scenario: Callable[[ServerState], Awaitable[None]]) -> Callable[[], None]:
    """The test: `scenario` run in an event loop of its own, with server state of its own."""

    def test() -> None:
        asyncio.run(scenario(ServerState()))

    test.__name__ = scenario.__name__
    test.__doc__ = scenario.__doc__
    return test


def connection(state: ServerState, served: Served) -> tuple[GuardedHttp, Transport]:
    config = Config(app=served, http=GuardedHttp, proxy_headers=False, log_level="warning")
    config.load()
    protocol = GuardedHttp(config=config, server_state=state, app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def answer(transport: Transport) -> tuple[int, bytes, dict[str, Any]]:
    head, _, body = bytes(transport.written).partition(b"\r\n\r\n")
    return int(head.split()[1]), head.lower(), orjson.loads(body) if body.strip() else {}


@in_loop
async def test_a_whole_request_is_answered_and_arms_no_timer(state: ServerState) -> None:
    protocol, transport = connection(state, Served())
    protocol.data_received(REQUEST)
    await settle()
    assert answer(transport)[0] == 200
    assert protocol.timer is None
    assert not transport.closed


@in_loop
async def test_headers_past_the_byte_limit_are_431_the_rest_dropped(
    state: ServerState,
) -> None:
    served = Served()
    protocol, transport = connection(state, served)
    protocol.data_received(b"POST /predict HTTP/1.1\r\n" + b"X-A: " + b"a" * 3000)
    status, head, body = answer(transport)
    assert (status, body["status"]) == (431, 431)
    assert b"connection: close" in head and transport.eof
    protocol.data_received(b"a" * 10_000)  # read and dropped, not parsed
    assert served.refusals == ["header_bytes"]


@in_loop
async def test_too_many_headers_are_431_through_the_app(state: ServerState) -> None:
    served = Served()
    protocol, transport = connection(state, served)
    headers = b"".join(b"X-%d: 1\r\n" % i for i in range(11))
    protocol.data_received(b"POST /predict HTTP/1.1\r\n" + headers + b"Content-Length: 2\r\n\r\n{}")
    await settle()
    status, _, body = answer(transport)
    assert status == 431 and "MAX_HEADER_COUNT" in body["detail"]
    assert served.refusals == ["header_count"] and transport.closed


@in_loop
async def test_a_connection_past_the_cap_is_answered_503(state: ServerState) -> None:
    served = Served()
    [connection(state, served) for _ in range(2)]
    protocol, transport = connection(state, served)
    protocol.data_received(REQUEST)
    await settle()
    status, head, _ = answer(transport)
    assert status == 503 and b"retry-after: 1" in head and b"connection: close" in head
    assert served.refusals == ["connections"]


@in_loop
async def test_probes_past_the_cap_are_answered_then_the_connection_closes(
    state: ServerState,
) -> None:
    served = Served()
    [connection(state, served) for _ in range(2)]
    for target in (
        b"/health/live",
        b"/health/ready",
        b"/v2/health/live",
        b"/v2/health/ready?x=1",
        b"/v2/models/wine/ready",
        b"/v2/models/wine/versions/3/ready",
    ):
        protocol, transport = connection(state, served)
        protocol.data_received(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % target)
        await settle()
        status, head, body = answer(transport)
        assert (status, body) == (200, {}), target
        assert b"connection: close" in head and transport.closed, target
    for target in (b"/health", b"/v2/models/wine", b"/v2/models/wine/infer", b"/healthz/live"):
        protocol, transport = connection(state, served)
        protocol.data_received(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % target)
        await settle()
        assert answer(transport)[0] == 503, target
    assert served.refusals == ["connections"] * 4


@in_loop
async def test_slow_headers_are_408_and_a_silent_connection_is_closed(state: ServerState) -> None:
    protocol, transport = connection(state, Served())
    protocol.data_received(b"POST /predict HTTP/1.1\r\n")
    await asyncio.sleep(0.3)
    assert answer(transport)[0] == 408
    _, silent_transport = connection(state, Served())
    await asyncio.sleep(0.3)
    assert silent_transport.closed and not silent_transport.written


@in_loop
async def test_a_slow_body_is_408(state: ServerState) -> None:
    protocol, transport = connection(state, Served())
    protocol.data_received(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n{")
    await asyncio.sleep(0.3)
    status, _, body = answer(transport)
    assert status == 408 and "BODY_TIMEOUT_S" in body["detail"]


@in_loop
async def test_on_shutdown_an_idle_connection_answers_a_request_then_closes(
    state: ServerState,
) -> None:
    protocol, transport = connection(state, Served())
    protocol.data_received(REQUEST)
    await settle()
    transport.written.clear()
    protocol.shutdown()
    assert not transport.closed  # uvicorn's own would close it here
    protocol.data_received(REQUEST)
    await settle()
    status, head, _ = answer(transport)
    assert status == 200 and b"connection: close" in head and transport.closed
    idle, idle_transport = connection(state, Served())
    idle.shutdown()
    await asyncio.sleep(0.3)
    assert idle_transport.closed


def test_a_wrapped_app_gets_the_environments_limits_read_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def wrapped(scope: Any, receive: Any, send: Any) -> None:  # no `refuse`: no edge
        pass

    reads: list[int] = []
    read = connections.settings_from_environment

    def counted() -> Any:
        reads.append(1)
        return read()

    monkeypatch.setenv("MAX_HEADER_COUNT", "7")
    monkeypatch.setenv("MAX_CONNECTIONS", "3")
    monkeypatch.setattr(connections, "settings_from_environment", counted)
    environment_limits.cache_clear()
    try:

        async def two_connections() -> list[HttpLimits]:
            state = ServerState()
            found = []
            for _ in range(2):
                protocol, _transport = connection(state, wrapped)  # type: ignore[arg-type]
                found.append(protocol.limits)
            return found

        first, second = asyncio.run(two_connections())
    finally:
        environment_limits.cache_clear()
    assert (first.max_header_count, first.max_connections) == (7, 3)
    assert second is first and len(reads) == 1
