"""Prometheus metrics, correct with several worker processes.

With WORKERS > 1, `python -m app` points PROMETHEUS_MULTIPROC_DIR at a fresh folder before any
worker starts: every worker then writes its samples there, and /metrics, whichever worker
answers it, adds up all of them (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

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


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class Metrics:
    """The service's metrics, in a registry of their own (one per app, so tests can build many)."""

    def __init__(self) -> None:
        disable_created_metrics()  # `_created` series double the output and nobody reads them
        self.registry = CollectorRegistry(auto_describe=True)
        self._run_children: dict[tuple[str, int], tuple[Any, Any]] = {}
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

    def exposition(self) -> tuple[bytes, str]:
        """The text to answer /metrics with, and its content type."""
        folder = multiprocess_dir()
        if folder is None:
            return generate_latest(self.registry), TEXT_FORMAT
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined, path=folder)
        return generate_latest(combined), TEXT_FORMAT

    # -- the model layer's observer (ml.model.RunObserver, ml.registry.LoadObserver) ----------

    def ran(self, model: str, version: int, rows: int, seconds: float) -> None:
        children = self._run_children.get((model, version))
        if children is None:  # label lookups cost more than the updates: done once per version
            labels = (model, str(version))
            children = self._run_children[(model, version)] = (
                self.inference.labels(*labels),
                self.batch_size.labels(*labels),
            )
        children[0].observe(seconds)
        children[1].observe(rows)

    def queued(self, model: str, version: int, depth: int) -> None:
        self.queue_depth.labels(model, str(version)).set(depth)

    def load_failed(self, model: str) -> None:
        self.load_failures.labels(model).inc()

    def versions_serving(self, model: str, count: int) -> None:
        self.loaded_versions.labels(model).set(count)
