"""The last minute of traffic of each model version, for the status page.

Fed by the metrics' flush (every FLUSH_INTERVAL_S, and before each scrape) from the tallies that
requests already record into, so it adds nothing per request: one slot per version and wall-clock
second, holding the requests answered, those answered with an error status, and the latency
histogram's bucket counts. Percentiles are estimated from the buckets, as Prometheus's
`histogram_quantile` does.

With WORKERS > 1 each worker also writes its slots to a file of its own in prometheus-client's
multiprocess folder after each flush that saw traffic, and the status page adds up every worker's
slots of the last minute: the sum over workers, whichever worker answers.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from app.metrics import LATENCY_BUCKETS, AnswerKey
from app.worker_files import others, write_json

WINDOW_S = 60
STEP_S = 5  # the latency chart's resolution
FILE_PREFIX = "ui-recent-"

VersionKey = tuple[str, str]  # model, version
Slots = dict[int, list[int]]  # second -> [requests, errors, *bucket counts]
ERROR_STATUS = 400


def quantile(q: float, counts: Sequence[int], bounds: Sequence[float]) -> float | None:
    """The `q` quantile of a histogram, interpolated linearly inside its bucket; None when empty.
    Past the last finite bound it is that bound, as in Prometheus."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    below = 0
    for index, count in enumerate(counts):
        if count and below + count >= rank:
            lower = bounds[index - 1] if index else 0.0
            upper = bounds[index]
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / count
        below += count
    return bounds[-2]


def _add(into: list[int], slot: Sequence[int]) -> None:
    for index, value in enumerate(slot):
        into[index] += value


class RecentTraffic:
    """Per-second slots of the last `window_s` seconds, by model version."""

    def __init__(
        self,
        folder: str | None = None,
        *,
        bounds: Sequence[float] = LATENCY_BUCKETS,
        window_s: int = WINDOW_S,
        clock: Callable[[], float] = time.time,
        pid: int | None = None,
    ) -> None:
        self.bounds = (*bounds, math.inf)
        self.window_s = window_s
        self._clock = clock
        self._width = 2 + len(self.bounds)
        self._slots: dict[VersionKey, Slots] = {}
        self.pid = os.getpid() if pid is None else pid
        self._folder = Path(folder) if folder else None

    # -- fed by Metrics.flush, on the event loop --------------------------------------------

    def take(self, answers: Mapping[AnswerKey, Any]) -> None:
        """Add what the answers' tallies hold since the last flush (read before they empty)."""
        now = int(self._clock())
        seen = False
        for (_route, model, version, status), tally in answers.items():
            if not tally.count or not version:
                continue  # requests never resolved to a version belong to no row of the page
            slots = self._slots.setdefault((model, version), {})
            slot = slots.get(now)
            if slot is None:
                slot = slots[now] = [0] * self._width
            slot[0] += tally.count
            if status >= ERROR_STATUS:
                slot[1] += tally.count
            for index, count in enumerate(tally.latency.counts):
                if count:
                    slot[2 + index] += count
            seen = True
        self._expire(now)
        if seen and self._folder is not None:
            self._publish()

    def _expire(self, now: int) -> None:
        oldest = now - self.window_s
        for key in list(self._slots):
            slots = self._slots[key]
            for second in [s for s in slots if s <= oldest]:
                del slots[second]
            if not slots:
                del self._slots[key]

    def _publish(self) -> None:
        assert self._folder is not None
        rows = [[model, version, slots] for (model, version), slots in self._slots.items()]
        write_json(self._folder / f"{FILE_PREFIX}{self.pid}.json", rows)

    # -- read by the status route ------------------------------------------------------------

    def own(self) -> dict[VersionKey, Slots]:
        """A copy of this worker's slots (taken on the event loop, where `take` runs)."""
        return {key: dict(slots) for key, slots in self._slots.items()}

    def others(self) -> list[dict[VersionKey, Slots]]:
        """The other workers' slots, from their files of the last minute (blocking file reads:
        call it off the event loop). Empty without a multiprocess folder."""
        if self._folder is None:
            return []
        fresh_after = self._clock() - self.window_s
        found = []
        # A worker that has answered nothing for a minute, or is gone, is left out.
        for rows in others(self._folder, FILE_PREFIX, self.pid, fresh_after):
            with contextlib.suppress(TypeError, ValueError, AttributeError):
                found.append(
                    {
                        (model, version): {int(s): slot for s, slot in slots.items()}
                        for model, version, slots in rows
                    }
                )
        return found

    def summary(self, workers: Iterable[Mapping[VersionKey, Slots]]) -> dict[VersionKey, Any]:
        """Requests, rate, errors, p50/p99 and a chart series per version, over the last
        `window_s` seconds of every worker in `workers`, added up; versions that answered
        nothing in that time are left out."""
        now = int(self._clock())
        steps = self.window_s // STEP_S
        first = now - steps * STEP_S + 1  # the oldest second of the window
        merged: dict[VersionKey, list[list[int]]] = {}
        for slots_by_version in workers:
            for key, slots in slots_by_version.items():
                series = merged.get(key)
                if series is None:
                    series = merged[key] = [[0] * self._width for _ in range(steps)]
                for second, slot in slots.items():
                    if first <= second <= now:
                        _add(series[(second - first) // STEP_S], slot)
        return {
            key: self._describe(series)
            for key, series in merged.items()
            if any(step[0] for step in series)
        }

    def _describe(self, series: list[list[int]]) -> dict[str, Any]:
        total = [0] * self._width
        for step in series:
            _add(total, step)
        return {
            "requests": total[0],
            "rate_per_s": round(total[0] / self.window_s, 3),
            "errors": total[1],
            **self._percentiles(total),
            "series": [{"requests": step[0], **self._percentiles(step)} for step in series],
        }

    def _percentiles(self, slot: Sequence[int]) -> dict[str, float | None]:
        counts = slot[2:]
        return {
            name: None if (seconds := quantile(q, counts, self.bounds)) is None
            else round(seconds * 1000, 3)
            for name, q in (("p50_ms", 0.5), ("p99_ms", 0.99))
        }  # fmt: skip
