"""Closing windows and judging them: the counts of a window against the profile.

A window's state is JSON (it may be shared by worker processes through a file): the count
vectors at its start (`baseline`, one per counter, keyed by the counter's serial), when it
opened, how many windows closed before it, and the reports of the last ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml.drift.counter import Layout
from ml.drift.profile import Binning, Profile
from ml.drift.psi import psi, threshold_for

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
    window ends (a single process), closed first."""
    layout = Layout.of(profile)
    closed: list[dict[str, Any]] = []
    for mark in marks:
        (serial,) = totals
        closed.append(_close(state, profile, layout, {serial: mark}, now))
    baseline = {k: np.asarray(v, dtype=np.int64) for k, v in state["baseline"].items()}
    open_counts = sum(
        (total - baseline.get(serial, 0) for serial, total in totals.items()),
        np.zeros(layout.size, dtype=np.int64),
    )
    rows = int(open_counts[layout.rows])
    state["open_rows"] = rows
    timed_out = now - state["opened_at"] >= rule.seconds and rows >= rule.min_rows
    if rows and (rows >= rule.rows or timed_out):
        closed.append(_close(state, profile, layout, totals, now))
    return closed


def _close(
    state: dict[str, Any],
    profile: Profile,
    layout: Layout,
    totals: Mapping[str, np.ndarray],
    now: float,
) -> dict[str, Any]:
    baseline = state["baseline"]
    counts = sum(
        (np.asarray(t, dtype=np.int64) - np.asarray(baseline.get(s, 0)) for s, t in totals.items()),
        np.zeros(layout.size, dtype=np.int64),
    )
    state["closed"] += 1
    report = judge(profile, layout, counts, state["closed"], state["opened_at"], now)
    state["baseline"] = {serial: [int(v) for v in total] for serial, total in totals.items()}
    state["opened_at"] = now
    state["open_rows"] = 0
    state["reports"] = [*state["reports"], report][-KEPT_REPORTS:]
    return report


def judge(
    profile: Profile,
    layout: Layout,
    counts: np.ndarray,
    window: int,
    opened_at: float,
    closed_at: float,
) -> dict[str, Any]:
    """The report of one window from its count vector."""
    rows = int(counts[layout.rows])
    features = []
    for index, binning in enumerate(profile.features):
        bins = layout.feature_counts(counts, index, binning)
        entry = _shift(binning, bins, profile)
        seen = int(bins.sum())
        entry["missing_share"] = _share(int(bins[-1]), seen)
        entry["out_of_range_share"] = (
            _share(int(counts[layout.out_of_range + index]), seen)
            if binning.low is not None
            else None
        )
        entry["unseen_share"] = (
            _share(int(bins[-2]), seen) if binning.kind == "categorical" and binning.complete
            else None
        )  # fmt: skip
        features.append(entry)
    answers = None
    if profile.answers is not None and layout.answers is not None:
        bins = counts[layout.answers : layout.answers + profile.answers.size]
        answers = _shift(profile.answers, bins, profile) if bins.sum() else None
    over = [f["name"] for f in features if f["state"] == "drift"]
    return {
        "window": window,
        "opened_at": round(opened_at, 3),
        "closed_at": round(closed_at, 3),
        "rows": rows,
        "state": "drift" if over else "ok",
        "features_over_threshold": over,
        "features": features,
        "answers": answers,
    }


def _shift(binning: Binning, bins: np.ndarray, profile: Profile) -> dict[str, Any]:
    seen = int(bins.sum())
    value = float(psi(binning.shares, profile.rows, bins))
    threshold = threshold_for(seen, profile.window_sizes, binning.thresholds)
    reference = binning.shares
    current = bins / seen if seen else np.zeros(len(bins))
    moved = np.argsort(-np.abs(current - reference), kind="stable")[:MOVED_BINS]
    return {
        "name": binning.name,
        "psi": value,
        "threshold": threshold,
        "state": "drift" if value > threshold else "ok",
        "moved": [
            {
                "bin": binning.bin_label(int(i)),
                "reference_share": round(float(reference[i]), 6),
                "window_share": round(float(current[i]), 6),
            }
            for i in moved
            if current[i] != reference[i]
        ],
    }


def _share(count: int, total: int) -> float | None:
    return count / total if total else None
