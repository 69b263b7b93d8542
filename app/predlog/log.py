"""Which requests the prediction log keeps, and handing them to the sinks.

On the loop, once a prediction request has its answer: the model's share (`[prediction_log]`
in model.toml, else PREDICTION_LOG_PERCENT) decides in or out, by the hash of the key header's
value when the request carries one (the rollout's sticky hash, on a finer scale: one key is
always in or always out, on every worker and replica), else at random. A request in is queued
to each sink, or dropped and counted when that sink's queue is full.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from prometheus_client import Counter, Histogram

from app.config import Settings
from app.metrics import Metrics
from app.predlog.cloudevents import CloudEventsSink
from app.predlog.events import Event, Redactor
from app.predlog.files import FileSink
from app.predlog.sink import Sink
from ml.config import PredictionLogConfig
from ml.rollout import bucket
from ml.served import Served

# The hash of a key picks one of this many slots: shares to a hundredth of a percent.
KEY_SLOTS = 10_000
OUTCOMES = ("written", "dropped", "failed")
WRITE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                 0.5, 1.0, 2.5, 5.0, 10.0)  # fmt: skip
STOP_TIMEOUT_S = 5.0
# Single-row answers this process logged, kept by request id for feedback that names no version
# or prediction (app.feedback); the oldest go first.
RECENT_ANSWERS = 10_000

HeaderLookup = Callable[[str], str | None]
ConfigLookup = Callable[[str], PredictionLogConfig | None]


def log_metrics(metrics: Metrics) -> tuple[Counter, Histogram]:
    """The prediction log's metrics, registered once per app whether the log is on or not (a
    dashboard finds them described either way)."""
    events = Counter(
        "model_server_prediction_log_events",
        "Requests the prediction log kept, by sink and outcome: written, dropped (the sink's "
        "queue was full) or failed (the sink refused it or took too long).",
        ["sink", "outcome"],
        registry=metrics.registry,
    )
    write = Histogram(
        "model_server_prediction_log_write_seconds",
        "Time of one write to a sink: a batch of lines to a file, or one event over HTTP.",
        ["sink"],
        buckets=WRITE_BUCKETS,
        registry=metrics.registry,
    )
    return events, write


class PredictionLog:
    """The sampling rule, the sinks and their counts, for one process."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        instruments: tuple[Counter, Histogram],
        config_of: ConfigLookup,
    ) -> None:
        key = settings.prediction_log_redact_key
        redact = Redactor(key.get_secret_value().encode() if key is not None else None)
        self.percent = settings.prediction_log_percent
        self.key_header = settings.prediction_log_key_header
        self.config_of = config_of
        self.sinks: list[Sink] = []
        queue_rows = settings.prediction_log_queue_rows
        if settings.prediction_log_dir is not None:
            self.sinks.append(
                FileSink(
                    settings.prediction_log_dir,
                    redact,
                    queue_rows=queue_rows,
                    max_bytes=settings.prediction_log_max_bytes,
                    max_age_s=settings.prediction_log_max_age_s,
                    max_files=settings.prediction_log_max_files,
                )
            )
        if settings.prediction_log_url is not None:
            self.sinks.append(
                CloudEventsSink(
                    settings.prediction_log_url,
                    redact,
                    queue_rows=queue_rows,
                    timeout_s=settings.prediction_log_http_timeout_s,
                )
            )
        self.recent: dict[str, Served] = {}
        """The last RECENT_ANSWERS logged single-row answers, by request id."""
        self._counted = {(sink.name, outcome): 0 for sink in self.sinks for outcome in OUTCOMES}
        events, write = instruments
        self._children = {key: events.labels(*key) for key in self._counted}
        for sink in self.sinks:
            sink.observe = write.labels(sink.name).observe
        metrics.on_flush(lambda _answers: self.flush())

    @classmethod
    def configured(
        cls, settings: Settings, metrics: Metrics, config_of: ConfigLookup
    ) -> PredictionLog | None:
        """The log, when a sink is set (PREDICTION_LOG_DIR, PREDICTION_LOG_URL); else None.
        Its metrics are registered either way."""
        instruments = log_metrics(metrics)
        if settings.prediction_log_dir is None and settings.prediction_log_url is None:
            return None
        return cls(settings, metrics, instruments, config_of)

    # -- on the loop ------------------------------------------------------------------------

    def start(self) -> None:
        for sink in self.sinks:
            sink.start()

    def stop(self) -> None:
        """Write what is queued (each sink for up to a few seconds), then count it."""
        for sink in self.sinks:
            sink.stop(STOP_TIMEOUT_S)
        self.flush()

    def finish(
        self,
        note: Served,
        request_id: str,
        protocol: str,
        route: str,
        status: int,
        seconds: float,
        header: HeaderLookup,
    ) -> None:
        """A prediction request got its answer: keep it if it is in the model's share."""
        model = note.model
        if model is None:  # refused before any model took it: nothing of a model to keep
            return
        percent, key_header = self.percent, self.key_header
        config = self.config_of(model.name)
        if config is not None:
            percent = percent if config.percent is None else config.percent
            key_header = key_header if config.key_header is None else config.key_header
        if percent < 100:
            key = header(key_header) if key_header is not None else None
            if key is not None:
                if bucket(model.name, key, KEY_SLOTS) >= percent * (KEY_SLOTS // 100):
                    return
            elif random.random() * 100 >= percent:  # noqa: S311 - sampling, not a secret
                return
        rows = _rows(note)
        event = Event(note, request_id, protocol, route, status, seconds, time.time(), rows)
        for sink in self.sinks:
            sink.offer(event)
        if rows == 1 and note.error is None:
            recent = self.recent
            recent[request_id] = note
            if len(recent) > RECENT_ANSWERS:
                del recent[next(iter(recent))]

    def flush(self) -> None:
        """Move the sinks' counts into the metrics (at each metrics flush)."""
        for sink in self.sinks:
            for outcome, now in (
                ("written", sink.written),
                ("dropped", sink.dropped),
                ("failed", sink.failed),
            ):
                key = (sink.name, outcome)
                if now > self._counted[key]:
                    self._children[key].inc(now - self._counted[key])
                    self._counted[key] = now


def _rows(note: Served) -> int:
    if note.arrays:
        first = next(iter(note.arrays.values()))
        return int(first.shape[0]) if getattr(first, "ndim", 0) else 1
    return len(note.rows) if note.rows is not None else 1
