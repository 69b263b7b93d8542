"""HTTP connections with limits: uvicorn's httptools protocol, bounded where uvicorn is not.

uvicorn (with httptools) reads header sections of any size, waits for them for ever, keeps a
connection that has sent nothing open for ever, and closes idle kept-alive connections the
moment SIGTERM arrives. `GuardedHttp` adds, per connection and at next to no cost per request:

- MAX_HEADER_BYTES and MAX_HEADER_COUNT: a larger header section is answered 431;
- HEADER_TIMEOUT_S: headers that have not arrived in full by then are answered 408 (a
  connection that has sent nothing is closed); BODY_TIMEOUT_S, the same for the body;
- MAX_CONNECTIONS: a request on a connection beyond them is answered 503 (problem+json,
  `Retry-After`, `Connection: close`), never an empty reply; probes (`/health/...`,
  `/v2/health/...`, `/v2/models/.../ready`) are answered, then the connection closes, so that
  a busy server is not taken for a dead one (gRPC's health calls pass its call cap alike);
- on SIGTERM, an idle connection stays open DRAIN_IDLE_S, so that a request its client wrote
  before it saw the close is answered (with `Connection: close`) rather than reset.

Refusals of a request whose headers arrived go through the app (`Edge.refuse`), so the access
log and the metrics show them; the others are written here and counted in
`model_server_refused_total`. After a refusal the connection stops reading (what the client
still sends is discarded) and closes once the client has read the answer, or after
LINGER_S: closing at once, with unread bytes, would reset the connection and lose the answer.

`python -m app` serves with it; with uvicorn's own command: `--http app.connections:GuardedHttp`.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any, Protocol

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from app.config import Settings, settings_from_environment
from app.errors import PROBLEM_MEDIA_TYPE, HTTPProblem, failure, problem_body

# How long a refused connection keeps discarding what its client sends before it closes.
LINGER_S = 2.0


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The limits of one worker's HTTP connections (the settings of the same names)."""

    max_header_bytes: int
    max_header_count: int
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int
    drain_idle_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            settings.max_header_bytes,
            settings.max_header_count,
            settings.header_timeout_s,
            settings.body_timeout_s,
            settings.max_connections,
            settings.drain_idle_s,
        )


@functools.cache
def environment_limits() -> HttpLimits:
    """The limits the environment sets, read once: for an app wrapped by uvicorn (trace
    logging), which hides the edge and its limits."""
    return HttpLimits.from_settings(settings_from_environment())


def is_probe(target: bytes) -> bool:
    """Whether a request target is a liveness or readiness route, HTTP's or V2's."""
    path = target.partition(b"?")[0]
    if path.startswith((b"/health/", b"/v2/health/")):
        return True
    return path.startswith(b"/v2/models/") and path.endswith(b"/ready")


class Refusing(Protocol):
    """What the served app offers this module (app.edge.Edge does)."""

    http_limits: HttpLimits

    def refuse(self, problem: HTTPProblem) -> Any: ...

    def refused(self, reason: str) -> None: ...


def _raw_answer(problem: HTTPProblem) -> bytes:
    """A whole HTTP answer to `problem`, for a connection with no request to answer through."""
    body = problem_body(failure(problem))
    head = (
        f"HTTP/1.1 {problem.status} {problem.title}\r\n"
        f"content-type: {PROBLEM_MEDIA_TYPE}\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


# uvicorn's methods, called by name on the path of every request: `super()` builds a proxy
# object at each call.
_PARENT = HttpToolsProtocol


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's httptools connection, with the limits of `HttpLimits` (see the module)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        served: Refusing | None = self.app if hasattr(self.app, "refuse") else None
        self.served = served
        self.limits = served.http_limits if served else environment_limits()
        self.max_header_count = self.limits.max_header_count
        self.head_bytes = 0  # bytes received of the header section under way
        self.in_head = True  # between requests, or receiving a request's headers
        self.timer: asyncio.TimerHandle | None = None  # the header or the body deadline
        self.over_cap = False
        self.draining = False
        self.refusing = False

    # -- the connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.over_cap = len(self.connections) > self.limits.max_connections
        self._arm(self.limits.header_timeout_s, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refusing:
            return  # answered and closing: what still comes is dropped
        if self.in_head:
            self.head_bytes += len(data)
        _PARENT.data_received(self, data)
        if self.in_head:
            if not self.head_bytes:
                return  # the usual case: whole requests, nothing under way
            if self.head_bytes > self.limits.max_header_bytes:
                limit = self.limits.max_header_bytes
                detail = f"the request's headers passed {limit} bytes (MAX_HEADER_BYTES)"
                problem = HTTPProblem(431, "Request headers too large", detail)
                self._refuse_raw(problem, "header_bytes")
            elif self.timer is None:
                # The first bytes of a request on a kept-alive connection (not the whole head:
                # the usual request arrives whole, and arms nothing).
                self._arm(self.limits.header_timeout_s, self._head_timed_out)
        elif self.timer is None and self.cycle is not None and self.cycle.more_body:
            self._arm(self.limits.body_timeout_s, self._body_timed_out)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        if self.timer is not None:
            self._disarm()
        refusal = None
        if self.over_cap or len(self.headers) > self.max_header_count:
            refusal = self._refusal()
        if refusal is None or self.served is None:
            _PARENT.on_headers_complete(self)
        else:
            # The request is answered by the app's refusal rather than the app itself.
            problem, reason = refusal
            self._count(reason)
            app, self.app = self.app, self.served.refuse(problem)
            try:
                _PARENT.on_headers_complete(self)
            finally:
                self.app = app
        if (self.draining or self.over_cap) and self.cycle is not None:
            self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        _PARENT.on_message_complete(self)
        self.in_head = True
        if self.timer is not None:
            self._disarm()

    def shutdown(self) -> None:
        """SIGTERM: answer what is under way with `Connection: close`; an idle connection stays
        open for DRAIN_IDLE_S in case a request is already on its way."""
        self.draining = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
            return
        self._unset_keepalive_if_required()
        if self.head_bytes == 0:
            self._disarm()
            self._arm(self.limits.drain_idle_s, self._close_if_idle)

    # -- limits ----------------------------------------------------------------------------

    def _refusal(self) -> tuple[HTTPProblem, str] | None:
        """The answer to a request refused by a limit, and the limit's name, or None."""
        count = len(self.headers)
        if count > self.limits.max_header_count:
            limit = self.limits.max_header_count
            detail = f"the request has {count} headers; the limit is {limit} (MAX_HEADER_COUNT)"
            problem = HTTPProblem(431, "Request headers too large", detail, headers=_CLOSE)
            return problem, "header_count"
        if self.over_cap and not is_probe(self.url):  # probes are answered, then closed
            limit = self.limits.max_connections
            detail = f"the server holds its limit of {limit} connections (MAX_CONNECTIONS)"
            busy = _CLOSE | {"Retry-After": "1"}
            return HTTPProblem(503, "Overloaded", detail, headers=busy), "connections"
        return None

    def _head_timed_out(self) -> None:
        self.timer = None
        if self.head_bytes == 0:  # nothing of a request: an idle connection, closed
            self._count("idle")
            self.transport.close()
            return
        limit = self.limits.header_timeout_s
        detail = f"the request's headers did not arrive within {limit:g} s (HEADER_TIMEOUT_S)"
        self._refuse_raw(HTTPProblem(408, "Request timeout", detail), "header_timeout")

    def _body_timed_out(self) -> None:
        self.timer = None
        cycle = self.cycle
        if cycle is None or not cycle.more_body or cycle.response_started:
            return
        # The app, waiting for the rest of the body, is told the client has gone: it answers
        # 408 (app.body), which is what the access log records; this one reaches the client.
        cycle.disconnected = True
        cycle.message_event.set()
        limit = self.limits.body_timeout_s
        detail = f"the body did not arrive in full within {limit:g} s (BODY_TIMEOUT_S)"
        self._refuse_raw(HTTPProblem(408, "Request timeout", detail), "body_timeout", count=False)

    def _close_if_idle(self) -> None:
        self.timer = None
        if self.head_bytes == 0 and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()
        elif self.in_head:  # a request's headers are arriving: they get their own time
            self._arm(self.limits.header_timeout_s, self._head_timed_out)

    def _refuse_raw(self, problem: HTTPProblem, reason: str, count: bool = True) -> None:
        if count:
            self._count(reason)
        self.refusing = True
        self._disarm()
        self._unset_keepalive_if_required()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            self.transport.close()  # an answer is being written: nothing can go between
            return
        self.transport.write(_raw_answer(problem))
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the client reads the answer, then closes
        self._arm(LINGER_S, self.transport.close)

    def _count(self, reason: str) -> None:
        if self.served is not None:
            self.served.refused(reason)

    def _arm(self, delay: float, callback: Any) -> None:
        self.timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


_CLOSE = {"Connection": "close"}
