"""Feedback: the true outcome of earlier answers, scored per model and version.

Each item carries what it is scored on: the version that answered and its prediction, sent back
by the client from the answer (or from the prediction log, where the answers of a day are kept),
so any worker of any replica can score it without asking the one that answered. An item without
them is looked up among the single-row answers this process logged lately; not found there
(another process answered it, it was not sampled, or it is too old), it is counted as `unknown`
and ignored. A request id scored before by this process is counted as `duplicate` and ignored.

Classifiers are scored by accuracy (the prediction equals the actual class), regressors by the
mean absolute error. Figures are kept in total and over the last FEEDBACK_WINDOW_S, in slots of
a minute. With WORKERS > 1 each worker writes its figures to a file of its own in the metrics'
multiprocess folder after each call, and every reader adds up all workers' files: the figures of
the whole server, whichever worker answers. Prometheus adds up the replicas.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.metrics import Metrics
from app.worker_files import others, write_json

SLOT_S = 60
FILE_PREFIX = "feedback-"
# Request ids this process has scored, remembered to refuse a second score; the oldest go first.
SEEN_IDS = 100_000
OUTCOMES = ("correct", "incorrect", "scored", "unknown", "duplicate")

VersionKey = tuple[str, int]  # model, version
Tally = list[float]  # matched, correct, sum of absolute errors


def _add(into: Tally, other: Tally) -> None:
    for index, value in enumerate(other):
        into[index] += value


def figures(tally: Tally | None, classifier: bool) -> dict[str, Any]:
    """A tally as the reports show it."""
    matched, correct, abs_error = tally or (0, 0, 0.0)
    return {
        "matched": int(matched),
        "correct": int(correct) if classifier else None,
        "accuracy": correct / matched if classifier and matched else None,
        "mean_abs_error": None if classifier or not matched else abs_error / matched,
    }


class FeedbackBook:
    """This process's feedback figures, its counters, and the whole server's view of them."""

    def __init__(
        self,
        metrics: Metrics,
        window_s: int,
        folder: str | None,
        *,
        clock: Callable[[], float] = time.time,
        pid: int | None = None,
    ) -> None:
        self.window_s = window_s
        self._clock = clock
        self._folder = Path(folder) if folder else None
        self.pid = os.getpid() if pid is None else pid
        self._totals: dict[VersionKey, Tally] = {}
        self._slots: dict[VersionKey, dict[int, Tally]] = {}
        self._classifier: dict[str, bool] = {}
        self._seen: dict[tuple[str, str], None] = {}
        self.counter = Counter(
            "model_server_feedback",
            "Feedback items, by model, version and outcome: correct or incorrect (classifiers), "
            "scored (regressors), unknown or duplicate (ignored).",
            ["model", "version", "outcome"],
            registry=metrics.registry,
        )
        self.abs_error = Counter(
            "model_server_feedback_abs_error",
            "Sum of the absolute errors of scored regressor feedback, by model and version.",
            ["model", "version"],
            registry=metrics.registry,
        )
        metrics.add_collector(_Gauges(self))

    # -- on the loop, from POST /feedback ---------------------------------------------------

    def first_time(self, model: str, request_id: str) -> bool:
        """Whether this process has not scored `request_id` of `model` before (now it has)."""
        key = (model, request_id)
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > SEEN_IDS:
            del self._seen[next(iter(self._seen))]
        return True

    def score(
        self, model: str, version: int, classifier: bool, prediction: Any, actual: Any
    ) -> str:
        """Count one matched item; its outcome (correct, incorrect or scored)."""
        self._classifier[model] = classifier
        if classifier:
            right = str(prediction) == str(actual)
            tally = [1, int(right), 0.0]
            outcome = "correct" if right else "incorrect"
        else:
            error = abs(float(prediction) - float(actual))
            tally = [1, 0, error]
            outcome = "scored"
            self.abs_error.labels(model, str(version)).inc(error)
        key = (model, version)
        _add(self._totals.setdefault(key, [0, 0, 0.0]), tally)
        slots = self._slots.setdefault(key, {})
        slot = int(self._clock()) // SLOT_S
        _add(slots.setdefault(slot, [0, 0, 0.0]), tally)
        self.counter.labels(model, str(version), outcome).inc()
        return outcome

    def ignore(self, model: str, version: int | None, outcome: str) -> str:
        """Count an item that is not scored (unknown or duplicate)."""
        self.counter.labels(model, "" if version is None else str(version), outcome).inc()
        return outcome

    def expire(self) -> None:
        oldest = int(self._clock() - self.window_s) // SLOT_S
        for slots in self._slots.values():
            for slot in [s for s in slots if s <= oldest]:
                del slots[slot]

    def snapshot(self) -> dict[str, Any]:
        """This process's figures as the file other workers read (taken on the loop)."""
        self.expire()
        return {
            "classifier": dict(self._classifier),
            "totals": [[m, v, *t] for (m, v), t in self._totals.items()],
            "slots": [
                [m, v, slot, *t]
                for (m, v), slots in self._slots.items()
                for slot, t in slots.items()
            ],
        }

    # -- off the loop -----------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        """Whether other workers read this process's figures (a metrics folder is set)."""
        return self._folder is not None

    def publish(self, snapshot: dict[str, Any]) -> None:
        """Write this process's figures for the other workers (blocking: in a worker thread)."""
        if self._folder is None:
            return
        write_json(self._folder / f"{FILE_PREFIX}{self.pid}.json", snapshot)

    def _others(self) -> Iterator[dict[str, Any]]:
        if self._folder is None:
            return
        yield from others(self._folder, FILE_PREFIX, self.pid)

    def summary(self, own: dict[str, Any] | None = None) -> dict[str, dict[int, dict[str, Any]]]:
        """Every worker's figures added up: model -> version -> {"total", "recent"} (blocking
        file reads with WORKERS > 1: call it off the loop, with `own` taken on the loop)."""
        totals: dict[VersionKey, Tally] = {}
        recent: dict[VersionKey, Tally] = {}
        classifier: dict[str, bool] = {}
        first = int(self._clock() - self.window_s) // SLOT_S + 1
        for snapshot in (own or self.snapshot(), *self._others()):
            classifier.update(snapshot.get("classifier", {}))
            for model, version, *tally in snapshot.get("totals", ()):
                _add(totals.setdefault((model, version), [0, 0, 0.0]), tally)
            for model, version, slot, *tally in snapshot.get("slots", ()):
                if slot >= first:
                    _add(recent.setdefault((model, version), [0, 0, 0.0]), tally)
        out: dict[str, dict[int, dict[str, Any]]] = {}
        for (model, version), tally in sorted(totals.items()):
            is_classifier = classifier.get(model, True)
            out.setdefault(model, {})[version] = {
                "total": figures(tally, is_classifier),
                "recent": {
                    "window_s": self.window_s,
                    **figures(recent.get((model, version)), is_classifier),
                },
            }
        return out


class _Gauges(Collector):
    """Accuracy and mean absolute error per model and version, in total and over the window, of
    every worker (computed when /metrics is read)."""

    def __init__(self, book: FeedbackBook) -> None:
        self.book = book

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["model", "version", "window"]
        accuracy = GaugeMetricFamily(
            "model_server_feedback_accuracy",
            "Share of classifier feedback whose prediction was the actual class, by model, "
            "version and window (total, or recent: the last FEEDBACK_WINDOW_S).",
            labels=labels,
        )
        error = GaugeMetricFamily(
            "model_server_feedback_mean_abs_error",
            "Mean absolute error of regressor feedback, by model, version and window (total, "
            "or recent: the last FEEDBACK_WINDOW_S).",
            labels=labels,
        )
        for model, versions in self.book.summary().items():
            for version, spans in versions.items():
                for window in ("total", "recent"):
                    figure = spans[window]
                    if figure["accuracy"] is not None:
                        accuracy.add_metric([model, str(version), window], figure["accuracy"])
                    value = figure["mean_abs_error"]
                    if value is not None and math.isfinite(value):
                        error.add_metric([model, str(version), window], value)
        yield accuracy
        yield error
