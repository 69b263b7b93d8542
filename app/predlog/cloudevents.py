"""The CloudEvents sink: each logged request as two events over HTTP in binary mode, as KServe's
inference logger sends them, so that its consumers read them unchanged.

    POST <PREDICTION_LOG_URL>
    ce-specversion: 1.0
    ce-component: predictor
    content-type: application/json
    ce-id: <the request id>                             (the same for both events)
    ce-time: <RFC 3339>
    ce-source: /models/<model>/versions/<version>
    ce-inferenceservicename: <model>
    ce-modelversion: <version>
    ce-type: org.kubeflow.serving.inference.request     (then ...inference.response)

    {"inputs": {feature: [value, ...], ...}}                             (request event)
    {"predictions": [...], "probabilities": [...], "model_name": ...,
     "model_version": ..., "status": ..., "error": ...}                  (response event)

The requests are written out whole on the loop (`requests_of`), from parts of their heads made
once per target (per model version for the fields that name it); the sink's thread sends them on
one kept-alive connection and reads the status of each answer, a few lines of Python around two
system calls. A receiver slower than PREDICTION_LOG_HTTP_TIMEOUT_S, or answering other than
2xx, fails the event (counted) and the connection is opened afresh.
"""

from __future__ import annotations

import functools
import socket
import ssl
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

import orjson

from app.predlog.sink import Sink

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
SPEC_VERSION = "1.0"
# The most of an answer's head read before giving up on it.
MAX_HEAD_BYTES = 16 * 1024
_REQUEST_TYPE = f"ce-type: {REQUEST_TYPE}\r\ncontent-length: ".encode()
_RESPONSE_TYPE = f"ce-type: {RESPONSE_TYPE}\r\ncontent-length: ".encode()


class Target:
    """Where the events go: host, port and path of PREDICTION_LOG_URL, and the parts of the
    events' heads that are the same for every event, made once."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default = 443 if self.https else 80
        self.authority = self.host if self.port == default else f"{self.host}:{self.port}"
        self.opening = (
            f"POST {self.path} HTTP/1.1\r\nhost: {self.authority}\r\n"
            f"ce-specversion: {SPEC_VERSION}\r\nce-component: predictor\r\n"
            "content-type: application/json\r\nce-id: "
        ).encode()


@functools.lru_cache(maxsize=256)  # versions come and go: the least recently used go first
def _model_fields(model: str, version: str) -> bytes:
    """The header fields that name the model version, made once per version."""
    return (
        f"ce-source: /models/{model}/versions/{version}\r\n"
        f"ce-inferenceservicename: {model}\r\nce-modelversion: {version}\r\n"
    ).encode()


def requests_of(line: dict[str, Any], target: Target) -> tuple[bytes, bytes]:
    """The two HTTP requests (request event, response event) of one log line."""
    options = orjson.OPT_SERIALIZE_NUMPY
    request_body = orjson.dumps({"inputs": line["inputs"]}, option=options)
    response_body = orjson.dumps(
        {
            **(line["answer"] or {}),
            "model_name": line["model"],
            "model_version": str(line["version"]),
            "status": line["status"],
            "error": line["error"],
        },
        option=options,
    )
    head = b"".join(
        (
            target.opening,
            f"{line['request_id']}\r\nce-time: {line['time']}\r\n".encode(),
            _model_fields(line["model"], str(line["version"])),
        )
    )
    return (
        b"%s%s%d\r\n\r\n%s" % (head, _REQUEST_TYPE, len(request_body), request_body),
        b"%s%s%d\r\n\r\n%s" % (head, _RESPONSE_TYPE, len(response_body), response_body),
    )


class CloudEventsSink(Sink):
    """Sends each event's two requests in turn on one connection."""

    name = "http"

    def __init__(self, target: Target, *, queue_rows: int, timeout_s: float) -> None:
        super().__init__(queue_rows)
        self.target = target
        self.timeout_s = timeout_s
        self._socket: socket.socket | None = None
        self._buffer = b""

    def write(self, batch: Sequence[tuple[bytes, bytes]], events: int) -> None:
        for requests in batch:
            started = time.perf_counter()
            try:
                for request in requests:
                    self._send(request)
            except (OSError, _Refused) as exc:
                self.failed += 1
                self.warn("cannot send to %s: %s", self.target.authority, exc)
                self._disconnect()
                continue
            self.written += 1
            self.observe(time.perf_counter() - started)

    def _send(self, request: bytes) -> None:
        if self._socket is None:
            self._socket = self._connect()
        self._socket.sendall(request)
        self._read_answer()

    def _connect(self) -> socket.socket:
        target = self.target
        sock = socket.create_connection((target.host, target.port), timeout=self.timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if target.https:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
        self._buffer = b""
        return sock

    def _read_answer(self) -> None:
        """Read one answer (its head, and its body by content-length); raise unless 2xx."""
        head_end = self._fill_until(b"\r\n\r\n")
        head, self._buffer = self._buffer[:head_end], self._buffer[head_end + 4 :]
        status_line, _, fields = head.partition(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise _Refused(f"not an HTTP answer: {status_line[:80]!r}")
        length, close = 0, False
        for field in fields.split(b"\r\n"):
            name, _, value = field.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip() or 0)
            elif name == b"transfer-encoding" or (
                name == b"connection" and value.strip().lower() == b"close"
            ):
                close = True  # the body's end is not known by length: read no further
        while len(self._buffer) < length:
            self._receive()
        self._buffer = self._buffer[length:]
        if close:
            self._disconnect()
        status = int(parts[1])
        if not 200 <= status < 300:
            raise _Refused(f"the receiver answered {status}")

    def _fill_until(self, marker: bytes) -> int:
        while (found := self._buffer.find(marker)) < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise _Refused("the answer's head is too long")
            self._receive()
        return found

    def _receive(self) -> None:
        assert self._socket is not None
        chunk = self._socket.recv(65536)
        if not chunk:
            raise ConnectionError("the receiver closed the connection")
        self._buffer += chunk

    def _disconnect(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._buffer = b""

    def close(self) -> None:
        self._disconnect()


class _Refused(Exception):
    """The receiver's answer was not a 2xx HTTP answer."""
