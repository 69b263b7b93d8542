"""Which requests the prediction log keeps, and how they reach the sinks.

On the loop, once a prediction request has its answer (`finish`): the model's share
(`[prediction_log]` in model.toml, else PREDICTION_LOG_PERCENT) decides in or out, by the hash of
the key header's value when the request carries one (the rollout's sticky hash, on a finer
scale: one key is always in or always out, on every worker and replica), else by a random draw
the edge made when the request came (`draw`). The draw comes first so that a request past every
model's share is not noted at all: sampling a small share costs the other requests nothing. A
request in is set aside, or dropped and counted when PREDICTION_LOG_QUEUE_ROWS rows wait already:
single-row answers of a version that fits (app.predlog.singles) as columns, when files are the
only sink; any other request by reference to its note.

A formatter task, also on the loop, turns what was set aside into bytes every FORMAT_EVERY_S,
yielding the loop between versions' columns and every SLICE_ROWS rows of the rest (so requests
never wait behind much of it): many lines formatted at once cost less each than one line
formatted after each request. Lines of one turn are not in the order of their requests (each
has its time). Lines go to each sink, whose own bounded queue drops and counts what it cannot
take.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson
from prometheus_client import Counter, Histogram

from app.background import in_background
from app.config import Settings
from app.metrics import Metrics
from app.predlog.answers import AnswerList, RecentAnswers
from app.predlog.cloudevents import CloudEventsSink, Target, requests_of
from app.predlog.events import Event, Redactor, record
from app.predlog.files import FileSink
from app.predlog.singles import SingleRows
from app.predlog.sink import Sink
from ml.config import PredictionLogConfig
from ml.model import LoadedModel
from ml.rollout import bucket
from ml.served import Served

# The hash of a key picks one of this many slots: shares to a hundredth of a percent.
KEY_SLOTS = 10_000
OUTCOMES = ("written", "dropped", "failed")
WRITE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                 0.5, 1.0, 2.5, 5.0, 10.0)  # fmt: skip
STOP_TIMEOUT_S = 5.0
# How often the formatter runs, and the rows it formats between two yields of the loop.
FORMAT_EVERY_S = 0.02
SLICE_ROWS = 256
LINE_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
# Single-row answers this process logged, kept by request id for feedback that names no version
# or prediction (app.routes.feedback): at least this many of the last.
RECENT_ANSWERS = 10_000

HeaderLookup = Callable[[str], str | None]
ConfigsLookup = Callable[[], Mapping[str, PredictionLogConfig]]
_UNSEEN = object()
_ALWAYS_ZERO: Callable[[], float] = itertools.repeat(0.0).__next__


def log_metrics(metrics: Metrics) -> tuple[Counter, Histogram]:
    """The prediction log's metrics, registered once per app whether the log is on or not (a
    dashboard finds them described either way)."""
    events = Counter(
        "model_server_prediction_log_events",
        "Requests the prediction log kept, by sink and outcome: written, dropped (a queue was "
        "full) or failed (the sink refused it or took too long).",
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
    """The sampling rule, the formatter, the sinks and their counts, for one process."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        instruments: tuple[Counter, Histogram],
        configs: ConfigsLookup,
    ) -> None:
        key = settings.prediction_log_redact_key
        self.redact = Redactor(key.get_secret_value().encode() if key is not None else None)
        self.percent = settings.prediction_log_percent
        self.key_header = settings.prediction_log_key_header
        self.configs = configs
        """Each model's `[prediction_log]` in its model.toml, as the store reads now."""
        # The largest share a request drawn at random may fall in, over every model (100 while
        # any share is decided by a key header, whose requests are not drawn): read at each
        # store sync, with the model.toml files (`read_shares`).
        self._ceiling = 100.0
        self._everything = False  # every share 100, none keyed: set by `read_shares`
        self.draw: Callable[[], float | None] = self._random_draw
        """A request's random draw, from 0 to 100, made when it comes: None when it falls past
        every model's share (nothing of it will be kept: the edge notes nothing of it), else
        the number that `finish` compares with its model's share."""
        self.queue_rows = settings.prediction_log_queue_rows
        self.files: FileSink | None = None
        self.events: CloudEventsSink | None = None
        if settings.prediction_log_dir is not None:
            self.files = FileSink(
                settings.prediction_log_dir,
                queue_rows=self.queue_rows,
                max_bytes=settings.prediction_log_max_bytes,
                max_age_s=settings.prediction_log_max_age_s,
                max_files=settings.prediction_log_max_files,
            )
        if settings.prediction_log_url is not None:
            self.events = CloudEventsSink(
                Target(settings.prediction_log_url),
                queue_rows=self.queue_rows,
                timeout_s=settings.prediction_log_http_timeout_s,
            )
        self.sinks: list[Sink] = [s for s in (self.files, self.events) if s is not None]
        self.recent = RecentAnswers(RECENT_ANSWERS)
        """The last RECENT_ANSWERS logged single-row answers, by request id."""
        self._general_answers: AnswerList | None = None
        self._pending: list[Event] = []
        # Single-row answers by (version, protocol, route, status), set aside as columns (None:
        # that version's take the general way); only the file sink takes their lines, so they
        # are kept this way when it is the only sink.
        self._singles: dict[tuple[int, str, str, int], SingleRows | None] = {}
        self._by_column = self.files is not None and self.events is None
        self._default_share = (self.percent, self.key_header)
        self._shares: dict[str, tuple[float, str | None]] = {}
        """The share and key header of each model whose model.toml sets either, as read at the
        last store sync (`read_shares`); any other model's are the settings'."""
        self._pending_rows = 0
        self._counted = {(sink.name, outcome): 0 for sink in self.sinks for outcome in OUTCOMES}
        events, write = instruments
        self._children = {key: events.labels(*key) for key in self._counted}
        for sink in self.sinks:
            sink.observe = write.labels(sink.name).observe
        metrics.on_flush(lambda _answers: self.flush())

    @classmethod
    def configured(
        cls, settings: Settings, metrics: Metrics, configs: ConfigsLookup
    ) -> PredictionLog | None:
        """The log, when a sink is set (PREDICTION_LOG_DIR, PREDICTION_LOG_URL); else None.
        Its metrics are registered either way."""
        instruments = log_metrics(metrics)
        if settings.prediction_log_dir is None and settings.prediction_log_url is None:
            return None
        return cls(settings, metrics, instruments, configs)

    # -- on the loop ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The sinks' threads and the formatter while the block runs; what is queued when it
        ends is written for up to STOP_TIMEOUT_S."""
        for sink in self.sinks:
            sink.start()
        try:
            async with in_background(self._format_forever()):
                yield
        finally:
            await self._format_pending()
            for sink in self.sinks:
                await asyncio.to_thread(sink.stop, STOP_TIMEOUT_S)
            self.flush()

    def _random_draw(self) -> float | None:
        draw = random.random() * 100  # noqa: S311 - sampling, not a secret
        return draw if draw < self._ceiling else None

    def finish(
        self,
        note: Served,
        draw: float,
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
        if not self._everything:
            percent, key_header = self._shares.get(model.name, self._default_share)
            if percent < 100:
                key = header(key_header) if key_header is not None else None
                if key is not None:
                    if bucket(model.name, key, KEY_SLOTS) >= percent * (KEY_SLOTS // 100):
                        return
                elif draw >= percent:
                    return
        arrays, predictions = note.arrays, note.predictions
        if self._by_column and arrays and predictions is not None and note.error is None:
            key = (id(model), protocol, route, status)
            singles = self._singles.get(key, _UNSEEN)
            if singles is _UNSEEN:
                singles = self._singles[key] = SingleRows.for_answer(
                    model, protocol, route, status, arrays, predictions
                )
                if singles is not None:
                    self.recent.add(singles)
            if singles is not None and self._pending_rows < self.queue_rows:
                (matrix,) = arrays.values()
                if singles.add(time.time(), request_id, seconds, matrix, predictions):
                    self._pending_rows += 1
                    return
        rows = _rows(note)
        if self._pending_rows + rows > self.queue_rows:
            for sink in self.sinks:
                sink.dropped += 1
            return
        self._pending.append(
            Event(note, request_id, protocol, route, status, seconds, time.time(), rows)
        )
        self._pending_rows += rows
        if rows == 1 and note.error is None:
            # What feedback needs, not the note: dropping a note RECENT_ANSWERS requests later
            # would free its arrays and answer long after they left the processor's caches.
            if predictions is not None and predictions.predictions:
                self._remember(request_id, model, predictions.predictions[0], None)
            else:
                self._remember(request_id, model, None, note.outputs)

    def read_shares(self) -> None:
        """The store was synced: each model's share is read again from its model.toml, and the
        ceiling of the draws with them (the registry calls this)."""
        default_percent, default_key = self._default_share
        self._shares = {
            name: (
                default_percent if config.percent is None else config.percent,
                default_key if config.key_header is None else config.key_header,
            )
            for name, config in self.configs().items()
        }
        shares = [self._default_share, *self._shares.values()]
        keyed = any(key is not None for _, key in shares)
        self._ceiling = 100.0 if keyed else max(percent for percent, _ in shares)
        self._everything = not keyed and min(percent for percent, _ in shares) >= 100
        # Every request kept (the default): any draw is in every share, and 0 costs no Python
        # frame on each request; `finish` looks up no share.
        self.draw = _ALWAYS_ZERO if self._everything else self._random_draw

    def _remember(
        self,
        request_id: str,
        model: LoadedModel,
        prediction: Any,
        outputs: Mapping[str, Any] | None,
    ) -> None:
        answers = self._general_answers
        if answers is None:
            answers = self._general_answers = AnswerList()
            self.recent.add(answers)
        answers.add(request_id, (model, prediction, outputs))

    async def _format_forever(self) -> None:
        while True:
            await asyncio.sleep(FORMAT_EVERY_S)
            await self._format_pending()

    async def _format_pending(self) -> None:
        pending, self._pending, self._pending_rows = self._pending, [], 0
        singles, self._singles = self._singles, {}
        self._general_answers = None
        for group in singles.values():
            if group is not None and len(group):
                self._offer_lines(group)
                group.release()
                await asyncio.sleep(0)
        self.recent.trim()
        budget = SLICE_ROWS
        for event in pending:
            self._offer(event)
            budget -= event.rows
            if budget <= 0:
                await asyncio.sleep(0)  # let requests in between slices
                budget = SLICE_ROWS

    def _offer(self, event: Event) -> None:
        try:
            line = record(event, self.redact)
            if self.files is not None:
                self.files.offer(orjson.dumps(line, option=LINE_OPTIONS), event.rows)
            if self.events is not None:
                self.events.offer(requests_of(line, self.events.target), event.rows)
        except (TypeError, orjson.JSONEncodeError):  # a value JSON cannot hold: count it
            for sink in self.sinks:
                sink.unwritable += 1

    def _offer_lines(self, group: SingleRows) -> None:
        assert self.files is not None  # answers are set aside as columns for the file sink only
        count = len(group)
        try:
            lines = group.lines()
        except (TypeError, ValueError, orjson.JSONEncodeError):
            self.files.unwritable += count
            return
        self.files.offer(lines, count, count)

    def flush(self) -> None:
        """Move the sinks' counts into the metrics (at each metrics flush)."""
        for sink in self.sinks:
            for outcome, now in (
                ("written", sink.written),
                ("dropped", sink.dropped),
                ("failed", sink.failed + sink.unwritable),
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
