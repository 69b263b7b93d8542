"""The drift monitor: once every DRIFT_CHECK_S it takes the rows each profiled version noted,
bins them (on the event loop, a chunk at a time), closes the windows that are due, and
publishes what they show (GET /models/{name}/drift, gauges, a warning when a version's state
changes).

With one process every row is seen here in order, and windows end exactly at DRIFT_WINDOW_ROWS.
With WORKERS > 1 each worker writes its running counts to a file of its own in the metrics'
multiprocess folder, and the workers take turns (a file lock) at one shared file of windows:
whoever holds it adds up every worker's counts, closes a window once all of them together reach
DRIFT_WINDOW_ROWS (at the first check after, so a window may hold a few more), and the others
read the result; the figures are those of all workers together.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Gauge

from app.background import in_background
from app.config import Settings
from app.worker_files import read_json, write_json
from ml.drift.counter import DriftCounter, Pending
from ml.drift.windows import WindowRule, advance, new_state
from ml.registry import ModelRegistry

log = logging.getLogger(__name__)

COUNTS_PREFIX = "drift-counts-"
WINDOWS_FILE = "drift-windows.json"
LOCK_FILE = "drift-windows.lock"

VersionKey = tuple[str, int]


@dataclass(slots=True)
class _Tracked:
    model: str
    version: int
    counter: DriftCounter
    pending: Pending

    @property
    def key(self) -> str:
        return f"{self.model}/{self.version}/{self.counter.profile.digest}"


class DriftGauges:
    """The gauges of the last closed window of each version (the most recent write wins
    across workers: they all hold the same windows)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        by_feature = ["model", "version", "feature"]
        by_version = ["model", "version"]

        def gauge(name: str, text: str, labels: list[str]) -> Gauge:
            return Gauge(name, text, labels, multiprocess_mode="mostrecent", registry=registry)

        self.psi = gauge(
            "model_server_feature_drift",
            "PSI of a feature in the version's last closed drift window against its profile.",
            by_feature,
        )
        self.over = gauge(
            "model_server_drift_features",
            "Features over their drift threshold in the version's last closed window.",
            by_version,
        )
        self.answers = gauge(
            "model_server_answer_drift",
            "PSI of the version's answers in its last closed window against its profile.",
            by_version,
        )
        self.shares = {
            key: gauge(
                f"model_server_drift_{key}",
                f"Share of a feature's values {text} in the version's last closed window.",
                by_feature,
            )
            for key, text in (
                ("missing_share", "missing"),
                ("out_of_range_share", "outside the profile's min and max"),
                ("unseen_share", "not among the profile's categories"),
            )
        }
        self._features: dict[VersionKey, list[str]] = {}

    def show(self, model: str, version: int, report: dict[str, Any]) -> None:
        labels = (model, str(version))
        self.over.labels(*labels).set(len(report["features_over_threshold"]))
        answers = report["answers"]
        self.answers.labels(*labels).set(answers["psi"] if answers else float("nan"))
        for feature in report["features"]:
            self.psi.labels(*labels, feature["name"]).set(feature["psi"])
            for key, gauge in self.shares.items():
                share = feature[key]
                gauge.labels(*labels, feature["name"]).set(np.nan if share is None else share)
        self._features[(model, version)] = [f["name"] for f in report["features"]]

    def forget(self, model: str, version: int) -> None:
        names = self._features.pop((model, version), [])
        labels = (model, str(version))
        for gauge in (self.over, self.answers):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)
        for name in names:
            for gauge in (self.psi, *self.shares.values()):
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels, name)


class DriftMonitor:
    """Closes and judges the drift windows of every profiled version (see the module text)."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry,
        folder: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rule = WindowRule(
            settings.drift_window_rows, settings.drift_window_s, settings.drift_min_rows
        )
        self.interval_s = settings.drift_check_s
        self.gauges = DriftGauges(registry)
        self._folder = Path(folder) if folder else None
        self._clock = clock
        self._states: dict[str, dict[str, Any]] = {}  # one process: the windows, by key
        self._views: dict[VersionKey, dict[str, Any]] = {}
        self._shown: set[VersionKey] = set()

    def view(self, model: str, version: int) -> dict[str, Any] | None:
        """The windows of a profiled version as of the last check: `closed` (how many),
        `open_rows` and the last `reports`; None before its first check."""
        return self._views.get((model, version))

    @contextlib.asynccontextmanager
    async def running(self, registry: ModelRegistry) -> AsyncIterator[None]:
        """Check every `interval_s` while the block runs."""

        async def check_forever() -> None:
            while True:
                await asyncio.sleep(self.interval_s)
                try:
                    await self.check(registry)
                except Exception:  # one failed check must not end the monitoring
                    log.exception("drift check failed")

        async with in_background(check_forever()):
            yield

    async def check(self, registry: ModelRegistry) -> None:
        """Take every profiled version's new rows and bin them, on the loop where they are
        added, a chunk at a time with other work let in between (a thread would hold the
        interpreter's lock against the requests); then close the windows that are due."""
        tracked = [
            _Tracked(entry.name, version, status.model.drift, status.model.drift.take())
            for entry in registry
            for version, status in entry.versions.items()
            if status.model is not None and status.model.drift is not None
        ]
        now = self._clock()
        if self._folder is None:
            views, closed = await self._close_alone(tracked, now)
        else:
            for item in tracked:
                for _ in item.counter.absorbing(item.pending):
                    await asyncio.sleep(0)
            views, closed = await asyncio.to_thread(self._close_shared, tracked, now, self._folder)
        self._views = views
        for item, reports, previous in closed:
            if reports:  # the last window is what the gauges show
                self.gauges.show(item.model, item.version, reports[-1])
                self._shown.add((item.model, item.version))
            for report in reports:
                if report["state"] != (previous or "ok"):
                    over = ", ".join(report["features_over_threshold"]) or "none"
                    log.warning(
                        "model %s version %s: drift state %s -> %s in window %d "
                        "(features over threshold: %s)",
                        item.model,
                        item.version,
                        previous or "none",
                        report["state"],
                        report["window"],
                        over,
                    )
                previous = report["state"]
        for model, version in self._shown - views.keys():
            self.gauges.forget(model, version)
            self._shown.discard((model, version))

    async def _close_alone(
        self, tracked: list[_Tracked], now: float
    ) -> tuple[dict[VersionKey, dict[str, Any]], list[tuple[_Tracked, list[Any], str | None]]]:
        """One process: windows end exactly every DRIFT_WINDOW_ROWS rows."""
        states: dict[str, dict[str, Any]] = {}
        closed = []
        for item in tracked:
            state = self._states.get(item.key) or new_state(now)
            states[item.key] = state
            counter = item.counter
            marks: list[np.ndarray] = []
            for chunk_marks in counter.absorbing(item.pending, self.rule.rows, state["open_rows"]):
                marks += chunk_marks
                await asyncio.sleep(0)
            previous = _last_state(state)
            reports = advance(
                state, counter.profile, {counter.serial: counter.total}, marks, self.rule, now
            )
            closed.append((item, reports, previous))
        self._states = states  # versions no longer served are forgotten
        return _views(tracked, states), closed

    # -- in a worker thread -----------------------------------------------------------------

    def _close_shared(
        self, tracked: list[_Tracked], now: float, folder: Path
    ) -> tuple[dict[VersionKey, dict[str, Any]], list[tuple[_Tracked, list[Any], str | None]]]:
        """Several workers: publish this worker's counts, then, under the lock, add up every
        worker's and close what is due in the shared file of windows."""
        own = {item.key: {item.counter.serial: item.counter.total.tolist()} for item in tracked}
        write_json(folder / f"{COUNTS_PREFIX}{os.getpid()}.json", own)
        closed = []
        with _locked(folder / LOCK_FILE):
            states = read_json(folder / WINDOWS_FILE) or {}
            totals = _all_counts(folder)
            for item in tracked:
                state = states.setdefault(item.key, new_state(now))
                previous = _last_state(state)
                counts = {s: np.asarray(t, dtype=np.int64) for s, t in totals[item.key].items()}
                reports = advance(state, item.counter.profile, counts, [], self.rule, now)
                closed.append((item, reports, previous))
            write_json(folder / WINDOWS_FILE, states)
        return _views(tracked, states), closed


def _last_state(state: dict[str, Any]) -> str | None:
    reports = state["reports"]
    return str(reports[-1]["state"]) if reports else None


def _views(
    tracked: list[_Tracked], states: dict[str, dict[str, Any]]
) -> dict[VersionKey, dict[str, Any]]:
    return {
        (item.model, item.version): {
            "closed": states[item.key]["closed"],
            "open_rows": states[item.key]["open_rows"],
            "reports": list(states[item.key]["reports"]),
        }
        for item in tracked
    }


def _all_counts(folder: Path) -> dict[str, dict[str, list[int]]]:
    """Every worker's running counts by key, then by counter serial."""
    totals: dict[str, dict[str, list[int]]] = {}
    for path in folder.glob(f"{COUNTS_PREFIX}*.json"):
        for key, by_serial in (read_json(path) or {}).items():
            totals.setdefault(key, {}).update(by_serial)
    return totals


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
