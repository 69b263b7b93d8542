"""The CloudEvents sink: each logged request as two events over HTTP in binary mode, as KServe's
inference logger sends them, so that its consumers read them unchanged.

    POST <PREDICTION_LOG_URL>
    ce-specversion: 1.0
    ce-type: org.kubeflow.serving.inference.request     (then ...inference.response)
    ce-id: <the request id>                             (the same for both events)
    ce-source: /models/<model>/versions/<version>
    ce-time: <RFC 3339>
    ce-inferenceservicename: <model>
    ce-modelversion: <version>
    ce-component: predictor
    content-type: application/json

    {"instances": [{feature: value, ...}, ...]}                          (request event)
    {"predictions": [...], "probabilities": [...], "model_name": ...,
     "model_version": ..., "status": ..., "error": ...}                  (response event)

One connection, kept alive; a receiver slower than PREDICTION_LOG_HTTP_TIMEOUT_S or answering
other than 2xx fails the event (counted), and the connection is opened afresh.
"""

from __future__ import annotations

import http.client
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

import orjson

from app.predlog.events import Event, Redactor, record
from app.predlog.sink import Sink

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
SPEC_VERSION = "1.0"


class CloudEventsSink(Sink):
    """Posts each event's request and response as CloudEvents."""

    name = "http"

    def __init__(self, url: str, redact: Redactor, *, queue_rows: int, timeout_s: float) -> None:
        super().__init__(queue_rows)
        parts = urllib.parse.urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.redact = redact
        self.timeout_s = timeout_s
        self._connection: http.client.HTTPConnection | None = None

    def write(self, batch: Sequence[Event]) -> None:
        for event in batch:
            try:
                line = record(event, self.redact)
                bodies = _bodies(line)
            except (TypeError, orjson.JSONEncodeError) as exc:
                self.failed += 1
                self.warn("an event could not be written as JSON: %s", exc)
                continue
            started = time.perf_counter()
            headers = _headers(line)
            try:
                for kind, body in zip((REQUEST_TYPE, RESPONSE_TYPE), bodies, strict=True):
                    self._post({**headers, "ce-type": kind}, body)
            except (OSError, http.client.HTTPException, _Refused) as exc:
                self.failed += 1
                self.warn("cannot send to %s:%s%s: %s", self.host, self.port, self.path, exc)
                self._disconnect()
                continue
            self.written += 1
            self.observe(time.perf_counter() - started)

    def _post(self, headers: dict[str, str], body: bytes) -> None:
        if self._connection is None:
            kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self._connection = kind(self.host, self.port, timeout=self.timeout_s)
        connection = self._connection
        connection.request("POST", self.path, body, headers)
        response = connection.getresponse()
        response.read()
        if not 200 <= response.status < 300:
            raise _Refused(f"the receiver answered {response.status}")

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def close(self) -> None:
        self._disconnect()


class _Refused(Exception):
    """The receiver answered with a status other than 2xx."""


def _headers(line: dict[str, Any]) -> dict[str, str]:
    return {
        "ce-specversion": SPEC_VERSION,
        "ce-id": line["request_id"],
        "ce-source": f"/models/{line['model']}/versions/{line['version']}",
        "ce-time": line["time"],
        "ce-inferenceservicename": line["model"],
        "ce-modelversion": str(line["version"]),
        "ce-component": "predictor",
        "content-type": "application/json",
    }


def _bodies(line: dict[str, Any]) -> tuple[bytes, bytes]:
    response = {
        **(line["answer"] or {}),
        "model_name": line["model"],
        "model_version": str(line["version"]),
        "status": line["status"],
        "error": line["error"],
    }
    options = orjson.OPT_SERIALIZE_NUMPY
    return orjson.dumps({"instances": line["inputs"]}, option=options), orjson.dumps(
        response, option=options
    )
