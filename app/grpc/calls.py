"""What every gRPC call gets, as every HTTP request does in app.edge: a request id (the
caller's `x-request-id` metadata when it is well formed, else a new one, sent back in the
trailing metadata), a count and a duration in the metrics, and one access log line.

Metrics label a call by its method path (`/inference.GRPCInferenceService/ModelInfer`) and its
status by the gRPC code's number (0 is OK).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import grpc

from app.access import log_access, logging_access, well_formed_id
from app.deadlines import RequestIds
from app.metrics import Metrics
from app.predlog.log import PredictionLog
from ml.served import Served

Context = grpc.aio.ServicerContext[Any, Any]
REQUEST_ID_KEY = "x-request-id"


@dataclass(slots=True)
class Tags:
    """A call's request id, and the model and version that answered it, once known."""

    request_id: str
    model: str = ""
    version: str = ""
    note: Served | None = None  # an infer call the prediction log may keep
    draw: float | None = None  # its draw for the log's random share (PredictionLog.draw)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((REQUEST_ID_KEY, self.request_id),)


class CallLog:
    """Request ids, metrics and the access log of the gRPC calls of one process."""

    def __init__(
        self, metrics: Metrics, access_log_on: bool, prediction_log: PredictionLog | None = None
    ) -> None:
        self.metrics = metrics
        self.access_log_on = access_log_on
        self.prediction_log = prediction_log
        self.ids = RequestIds()

    @staticmethod
    def metadata_value(context: Context, key: str) -> str | None:
        """The value of the caller's metadata `key` (case-insensitive, as HTTP headers)."""
        key = key.lower()
        for name, value in context.invocation_metadata() or ():
            if name == key:
                return value if isinstance(value, str) else None
        return None

    def request_id(self, context: Context) -> str:
        given = self.metadata_value(context, REQUEST_ID_KEY)
        if given is not None and well_formed_id(given.encode()):
            return given
        return self.ids.next().decode()

    def record(
        self, context: Context, route: str, tags: Tags, code: grpc.StatusCode, started: float
    ) -> None:
        seconds = time.perf_counter() - started
        status = code.value[0]
        self.metrics.answered(route, tags.model, tags.version, status, seconds)
        if tags.note is not None and tags.draw is not None and self.prediction_log is not None:
            lookup = lambda key: self.metadata_value(context, key)  # noqa: E731
            self.prediction_log.finish(
                tags.note, tags.draw, tags.request_id, "grpc", route, status, seconds, lookup
            )
        if self.access_log_on and logging_access():
            log_access(
                client=context.peer(),
                method="GRPC",
                path=route,
                route=route,
                status=status,
                seconds=seconds,
                request_id=tags.request_id,
                model=tags.model,
                version=tags.version,
                grpc_code=code.name,
            )
