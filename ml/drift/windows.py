"""Closing windows and judging them: the counts of a window against the profile.

A window's state is JSON (it may be shared by worker processes through a file): the count
vectors at its start (`baseline`, one per counter, keyed by the counter's serial), when it
opened, how many windows closed before it, and the reports of the last ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ml.drift.counter import Layout
from ml.drift.profile import CATEGORICAL, Binning, Profile
from ml.drift.psi import segment_psi, smoothed, threshold_for

KEPT_REPORTS = 10
MOVED_BINS = 3


@dataclass(frozen=True, slots=True)
class WindowRule:
    """When a window closes: at `rows` rows, or after `seconds` once it holds `min_rows`."""

    rows: int
    seconds: float
    min_rows: int


def new_state(now: float) -> dict[str, Any]:
    return {"baseline": {}, "opened_at": now, "closed": 0, "open_rows": 0, "reports": []}


def advance(
    state: dict[str, Any],
    profile: Profile,
    totals: Mapping[str, np.ndarray],
    marks: Sequence[np.ndarray],
    rule: WindowRule,
    now: float,
) -> list[dict[str, Any]]:
    """Close what is due and return the reports of the windows closed. `totals` are the
    current count vectors by counter serial; `marks` the vectors of the only counter at exact
    window ends (a single process), closed first. Only the last report names the bins that
    moved most: the others are history by the time anyone reads them."""
    layout = Layout.of(profile)
    ends: list[Mapping[str, np.ndarray]] = [{serial: mark} for mark in marks for serial in totals]
    baseline = _vectors(ends[-1] if ends else state["baseline"])
    open_counts = _difference(totals, baseline, layout)
    rows = int(open_counts[layout.rows])
    timed_out = now - state["opened_at"] >= rule.seconds and rows >= rule.min_rows
    if rows and (rows >= rule.rows or timed_out):
        ends.append(totals)
        rows = 0
    closed = []
    for index, end in enumerate(ends):
        counts = _difference(end, _vectors(state["baseline"]), layout)
        state["closed"] += 1
        detail = index == len(ends) - 1
        closed.append(
            judge(profile, layout, counts, state["closed"], state["opened_at"], now, detail)
        )
        state["baseline"] = {serial: total.tolist() for serial, total in _vectors(end).items()}
        state["opened_at"] = now
    state["open_rows"] = rows
    state["reports"] = [*state["reports"], *closed][-KEPT_REPORTS:]
    return closed


def _vectors(by_serial: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {serial: np.asarray(v, dtype=np.int64) for serial, v in by_serial.items()}


def _difference(
    totals: Mapping[str, np.ndarray], baseline: Mapping[str, np.ndarray], layout: Layout
) -> np.ndarray:
    """What every counter added since `baseline` (a counter missing there started since)."""
    counts = np.zeros(layout.size, dtype=np.int64)
    for serial, total in totals.items():
        counts += total
        if serial in baseline:
            counts -= baseline[serial]
    return counts


@dataclass(frozen=True, slots=True)
class _Plan:
    """What judging a window of a profile needs, computed once per profile: the features and
    the answers, their counted bins folded into the profile's, laid end to end."""

    binnings: tuple[Binning, ...]  # the features, then the answers if profiled
    fold: np.ndarray  # counted slot -> slot of the profile's bins laid end to end
    starts: np.ndarray  # of each one's bins, end to end
    sizes: np.ndarray
    shares: np.ndarray
    expected: np.ndarray  # the shares, smoothed
    outside: tuple[tuple[int, ...], ...]  # counted slots of out-of-range values, by feature


@lru_cache(maxsize=256)
def _plan(profile: Profile) -> _Plan:
    binnings = (*profile.features, *([profile.answers] if profile.answers is not None else []))
    sizes = np.array([b.size for b in binnings])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    folds, outside, counted_at = [], [], 0
    for binning, start in zip(binnings, starts.tolist(), strict=True):
        fold = binning.fold if binning.fold is not None else np.arange(binning.size)
        folds.append(fold + start)
        outside.append(tuple(counted_at + i for i in binning.outside))
        counted_at += binning.counted_size
    return _Plan(
        binnings=binnings,
        fold=np.concatenate(folds),
        starts=starts,
        sizes=sizes,
        shares=np.concatenate([b.shares for b in binnings]),
        expected=np.concatenate([smoothed(b.shares * profile.rows) for b in binnings]),
        outside=tuple(outside[: len(profile.features)]),
    )


def judge(
    profile: Profile,
    layout: Layout,
    counts: np.ndarray,
    window: int,
    opened_at: float,
    closed_at: float,
    detail: bool = True,
) -> dict[str, Any]:
    """The report of one window from its count vector; `detail` adds the bins that moved
    most to each feature."""
    plan = _plan(profile)
    bins = np.bincount(plan.fold, weights=counts[: len(plan.fold)], minlength=len(plan.shares))
    values, seen = segment_psi(plan.expected, bins, plan.starts, plan.sizes)
    current = bins / np.repeat(np.maximum(seen, 1), plan.sizes)
    moved = np.abs(current - plan.shares) if detail else None
    shifts = [
        _shift(
            binning, profile, float(values[i]), int(seen[i]), int(plan.starts[i]), current, moved
        )
        for i, binning in enumerate(plan.binnings)
    ]
    features = shifts[: len(profile.features)]
    for index, (binning, entry) in enumerate(zip(profile.features, features, strict=True)):
        start, total = int(plan.starts[index]), int(seen[index])
        entry["missing_share"] = _share(int(bins[start + binning.size - 1]), total)
        entry["out_of_range_share"] = (
            _share(int(sum(counts[i] for i in plan.outside[index])), total)
            if binning.fold is not None
            else None
        )
        entry["unseen_share"] = (
            _share(int(bins[start + binning.size - 2]), total)
            if binning.kind == CATEGORICAL and binning.complete
            else None
        )
    answers = shifts[-1] if profile.answers is not None and seen[-1] else None
    over = [f["name"] for f in features if f["state"] == "drift"]
    return {
        "window": window,
        "opened_at": round(opened_at, 3),
        "closed_at": round(closed_at, 3),
        "rows": int(counts[layout.rows]),
        "state": "drift" if over else "ok",
        "features_over_threshold": over,
        "features": features,
        "answers": answers,
    }


def _shift(
    binning: Binning,
    profile: Profile,
    value: float,
    seen: int,
    start: int,
    current: np.ndarray,
    moved: np.ndarray | None,
) -> dict[str, Any]:
    threshold = threshold_for(seen, profile.window_sizes, binning.thresholds)
    shift = {
        "name": binning.name,
        "psi": value,
        "threshold": threshold,
        "state": "drift" if value > threshold else "ok",
        "moved": None,
    }
    if moved is None:
        return shift
    most = np.argsort(-moved[start : start + binning.size], kind="stable")[:MOVED_BINS]
    return {
        **shift,
        "moved": [
            {
                "bin": binning.bin_labels[i],
                "reference_share": round(float(binning.shares[i]), 6),
                "window_share": round(float(current[start + i]), 6),
            }
            for i in most.tolist()
            if moved[start + i] > 0
        ],
    }


def _share(count: int, total: int) -> float | None:
    return count / total if total else None
