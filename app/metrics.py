"""Prometheus metrics, correct with several worker processes.

With WORKERS > 1, `python -m app` points PROMETHEUS_MULTIPROC_DIR at a fresh folder before any
worker starts: every worker then writes its samples there, and /metrics, whichever worker
answers it, adds up all of them (prometheus-client's multiprocess mode).

Each request records into tallies of plain numbers, moved into the prometheus-client metrics by
`flush()`: before every exposition, and every FLUSH_INTERVAL_S in the background so that another
worker's scrape sees them too. prometheus-client's own updates take three calls and two locks
per observation, a measurable share of a single-row request's time on a busy server (the
README's Performance section); a tally is one addition. Tallies are used on the event loop
thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from bisect import bisect_left
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from app.background import in_background

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
)  # fmt: skip
INFERENCE_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 1.0,
)  # fmt: skip
# generate_latest writes the 0.0.4 text format; newer prometheus-client versions label
# TEXT_FORMAT with a later version than the body they produce.
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 10000)
FLUSH_INTERVAL_S = 1.0


class _HistogramTally:
    """The observations of one histogram child since the last flush."""

    __slots__ = ("bounds", "child", "counts", "total")

    def __init__(self, child: Any, buckets: Sequence[float]) -> None:
        self.child = child
        self.bounds = (*buckets, math.inf)  # as the child's buckets: `le` each, +Inf last
        if len(child._buckets) != len(self.bounds):
            raise RuntimeError("prometheus-client's histogram buckets are not laid out as expected")
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bucket with value <= le
        self.total += value

    def flush(self) -> None:
        if not any(self.counts):
            return
        # prometheus-client offers no call that adds many observations at once; its histogram
        # child keeps one value per bucket and one for the sum, each with inc(), which is all
        # that observe() itself updates (the layout is checked above and by the tests).
        for index, count in enumerate(self.counts):
            if count:
                self.child._buckets[index].inc(count)
                self.counts[index] = 0
        self.child._sum.inc(self.total)
        self.total = 0.0


class _AnswerTally:
    """Requests answered with one route, model, version and status since the last flush."""

    __slots__ = ("count", "counter", "latency")

    def __init__(self, counter: Any, latency: _HistogramTally) -> None:
        self.counter = counter
        self.count = 0
        self.latency = latency

    def flush(self) -> None:
        if self.count:
            self.counter.inc(self.count)
            self.count = 0
        self.latency.flush()


AnswerKey = tuple[str, str, str, int]  # route, model, version, status
FlushListener = Callable[[Mapping[AnswerKey, _AnswerTally]], None]


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class _WithoutCreated(Collector):
    """`registry`'s metrics without their `_created` samples, which double the output and which
    nobody reads. Dropped here rather than by prometheus-client's switch, which is process-wide
    and would change every other registry of an app that embeds this one."""

    def __init__(self, registry: Collector) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():
            created = metric.name + "_created"
            metric.samples = [s for s in metric.samples if s.name != created]
            yield metric


class Metrics:
    """The service's metrics, in a registry of their own (one per app, so tests can build many)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._answers: dict[AnswerKey, _AnswerTally] = {}
        self._flush_listeners: list[FlushListener] = []
        self._runs: dict[tuple[str, int], tuple[_HistogramTally, _HistogramTally]] = {}
        self._rollout_children: dict[tuple[str, int], Any] = {}
        self._collectors: list[Collector] = []
        r = self.registry
        self.requests = Counter(
            "model_server_requests",
            "HTTP requests answered, by route, model, version and status.",
            ["route", "model", "version", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "model_server_request_duration_seconds",
            "Time from request to answer, by route and model.",
            ["route", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "model_server_inference_duration_seconds",
            "Time of one onnxruntime session run, by model and version.",
            ["model", "version"],
            buckets=INFERENCE_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "model_server_batch_size",
            "Rows per session run (a batch request, or single rows coalesced by batching).",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "model_server_batch_queue_depth",
            "Rows waiting in the batching queue of a version.",
            ["model", "version"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.load_failures = Counter(
            "model_server_model_load_failures",
            "Versions that failed to load or to warm up.",
            ["model"],
            registry=r,
        )
        self.loaded_versions = Gauge(
            "model_server_loaded_versions",
            "Versions serving, by model (the same in every worker once they converge).",
            ["model"],
            multiprocess_mode="liveall",
            registry=r,
        )
        self.rollout_requests = Counter(
            "model_server_rollout_requests",
            "Requests naming no version of a model with a rollout, by the version that answered.",
            ["model", "version"],
            registry=r,
        )
        self.refusals = Counter(
            "model_server_refused",
            "Connections, requests and calls refused by a limit, by protocol (http, grpc) and "
            "limit (header_bytes, header_count, header_timeout, body_timeout, idle, "
            "connections, concurrency, draining).",
            ["protocol", "reason"],
            registry=r,
        )
        self.shadow_comparisons = Counter(
            "model_server_shadow_comparisons",
            "Rows a rollout's candidate scored in the shadow of the default, by outcome "
            "(agreed, disagreed, error, dropped).",
            ["model", "candidate", "outcome"],
            registry=r,
        )
        self.rollout_states = Counter(
            "model_server_rollout_state_changes",
            "Changes of a model's rollout state, by the state entered (none, pending, active, "
            "halted); each is also a log line.",
            ["model", "state"],
            registry=r,
        )

    def refused(self, protocol: str, reason: str) -> None:
        """A connection, request or call refused by a limit (app.connections, app.grpc)."""
        self.refusals.labels(protocol, reason).inc()

    def answered(self, route: str, model: str, version: str, status: int, seconds: float) -> None:
        """One request answered: counted, and its duration observed."""
        key = (route, model, version, status)
        tally = self._answers.get(key)
        if tally is None:  # label lookups cost more than the updates: done once per key
            tally = self._answers[key] = _AnswerTally(
                self.requests.labels(route, model, version, str(status)),
                _HistogramTally(self.latency.labels(route, model), LATENCY_BUCKETS),
            )
        tally.count += 1
        tally.latency.observe(seconds)

    def add_collector(self, collector: Collector) -> None:
        """A collector computed when /metrics is read, from every worker's figures (it is not
        written to the multiprocess folder, so it is added to the exposition as it is)."""
        self.registry.register(collector)
        self._collectors.append(collector)

    def on_flush(self, listener: FlushListener) -> None:
        """Have `listener` read the answers' tallies at each flush, before they are emptied: a
        view of recent traffic that costs nothing per request."""
        self._flush_listeners.append(listener)

    def flush(self) -> None:
        """Move what the tallies hold into the prometheus-client metrics."""
        for listener in self._flush_listeners:
            listener(self._answers)
        for answer in self._answers.values():
            answer.flush()
        for inference, batch_size in self._runs.values():
            inference.flush()
            batch_size.flush()

    @contextlib.asynccontextmanager
    async def flushing(self, interval_s: float = FLUSH_INTERVAL_S) -> AsyncIterator[None]:
        """Flush every `interval_s` while the block runs, and once more as it ends."""

        async def flush_forever() -> None:
            while True:
                await asyncio.sleep(interval_s)
                self.flush()

        try:
            async with in_background(flush_forever()):
                yield
        finally:
            self.flush()

    def exposition(self) -> tuple[bytes, str]:
        """The text to answer /metrics with, and its content type."""
        self.flush()
        folder = multiprocess_dir()
        if folder is None:
            return generate_latest(_WithoutCreated(self.registry)), TEXT_FORMAT
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined, path=folder)
        for collector in self._collectors:
            combined.register(collector)
        return generate_latest(_WithoutCreated(combined)), TEXT_FORMAT

    # -- the model layer's observer (ml.observer.ServingObserver) ------------------------------

    def ran(self, model: str, version: int, rows: int, seconds: float) -> None:
        tallies = self._runs.get((model, version))
        if tallies is None:  # label lookups cost more than the updates: done once per version
            labels = (model, str(version))
            tallies = self._runs[(model, version)] = (
                _HistogramTally(self.inference.labels(*labels), INFERENCE_BUCKETS),
                _HistogramTally(self.batch_size.labels(*labels), BATCH_BUCKETS),
            )
        tallies[0].observe(seconds)
        tallies[1].observe(rows)

    def queued(self, model: str, version: int, depth: int) -> None:
        self.queue_depth.labels(model, str(version)).set(depth)

    def load_failed(self, model: str) -> None:
        self.load_failures.labels(model).inc()

    def versions_serving(self, model: str, count: int) -> None:
        self.loaded_versions.labels(model).set(count)

    def rollout_answered(self, model: str, version: int) -> None:
        child = self._rollout_children.get((model, version))
        if child is None:  # the label lookup costs more than the update: done once per version
            child = self._rollout_children[(model, version)] = self.rollout_requests.labels(
                model, str(version)
            )
        child.inc()

    def shadow_compared(self, model: str, candidate: int, outcome: str, rows: int) -> None:
        self.shadow_comparisons.labels(model, str(candidate), outcome).inc(rows)

    def rollout_state_changed(self, model: str, state: str) -> None:
        self.rollout_states.labels(model, state).inc()
