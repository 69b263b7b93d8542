"""`profile.json`: the reference data's distribution, written beside the model at export.

The reference rows are split at random in two halves. The first gives each numeric feature its
bin edges (the deciles, duplicates merged) and every bin's share; the second, held out, sets
each feature's alarm threshold: windows of each calibrated size are drawn from it with
replacement (`BOOTSTRAP_WINDOWS` of them), each window's PSI against the first half's shares is
computed as the server computes it, and the threshold is the `THRESHOLD_QUANTILE` quantile of
those PSIs. Data like the reference thus crosses it in about one window in a thousand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ml.drift.profile import CATEGORICAL, FORMAT, NUMERIC, parse_profile
from ml.drift.psi import psi

MIN_SAMPLE_ROWS = 500  # without a reference, the sample is profiled from this many rows
MIN_REFERENCE_ROWS = 200
TOP_VALUES = 50
WINDOW_SIZES = (100, 200, 500, 1000, 2000, 5000, 10_000)
BOOTSTRAP_WINDOWS = 2000
THRESHOLD_QUANTILE = 0.999
DECILES = np.linspace(0.1, 0.9, 9)
SEED = 0


def build_profile(
    feed: Mapping[str, np.ndarray],
    features: Sequence[str],
    outputs: Sequence[Any],
    *,
    per_column: bool,
    classes: Sequence[str | int] | None,
    labels: Sequence[str] | None,
    min_rows: int = MIN_REFERENCE_ROWS,
) -> dict[str, Any] | None:
    """The content of profile.json for the reference rows in `feed` (as the model takes them)
    and the model's `outputs` on them; None for fewer than `min_rows` rows."""
    n_rows = len(next(iter(feed.values())))
    if n_rows < min_rows:
        return None
    rng = np.random.default_rng(SEED)
    order = rng.permutation(n_rows)
    fit, held = order[: n_rows // 2], order[n_rows // 2 :]
    columns = (
        [feed[name][:, 0] for name in features] if per_column else list(next(iter(feed.values())).T)
    )
    profiled = [
        _profile(str(name), column, fit, held, rng)
        for name, column in zip(features, columns, strict=True)
    ]
    answers = _answers(outputs, n_rows, classes, labels)
    if answers is not None:
        column, values, names = answers
        answers_entry = _profile("answers", column, fit, held, rng, values, names)
    profile = {
        "format": FORMAT,
        "rows": len(fit),
        "held_out_rows": len(held),
        "window_sizes": list(WINDOW_SIZES),
        "threshold_quantile": THRESHOLD_QUANTILE,
        "features": profiled,
        "answers": None if answers is None else answers_entry,
    }
    parse_profile(profile, [str(f) for f in features])  # what the server will read
    return profile


def _answers(
    outputs: Sequence[Any],
    n_rows: int,
    classes: Sequence[str | int] | None,
    labels: Sequence[str] | None,
) -> tuple[np.ndarray, Sequence[Any] | None, Sequence[str] | None] | None:
    """The model's answers as one column: predicted classes, or the first output's values."""
    if not outputs:
        return None
    values = np.asarray(outputs[0]).reshape(-1)
    if len(values) != n_rows:
        return None
    if classes is not None:
        return values, list(classes), labels
    if values.dtype.kind not in "fiu":
        return None
    return values.astype(np.float64), None, None


def _profile(
    name: str,
    column: np.ndarray,
    fit: np.ndarray,
    held: np.ndarray,
    rng: np.random.Generator,
    values: Sequence[Any] | None = None,
    labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    if values is None and column.dtype.kind in "fiub":
        entry = _numeric(name, column.astype(np.float64), fit)
    else:
        entry = _categorical(name, column, fit, values, labels)
    parsed = parse_profile(
        {"format": FORMAT, "rows": 1, "window_sizes": [1], "features": [
            {**entry, "thresholds": [0.0]}
        ]},
        [name],
    ).features[0]  # fmt: skip
    reference = np.bincount(parsed.bins(column[fit]), minlength=parsed.size)
    shares = reference / len(fit)
    entry["shares"] = [float(s) for s in shares]
    held_shares = np.bincount(parsed.bins(column[held]), minlength=parsed.size) / len(held)
    entry["thresholds"] = [
        float(
            np.quantile(
                psi(shares, len(fit), rng.multinomial(size, held_shares, BOOTSTRAP_WINDOWS)),
                THRESHOLD_QUANTILE,
            )
        )
        for size in WINDOW_SIZES
    ]
    return entry


def _numeric(name: str, column: np.ndarray, fit: np.ndarray) -> dict[str, Any]:
    present = column[~np.isnan(column)]
    fit_present = column[fit][~np.isnan(column[fit])]
    edges = np.unique(np.quantile(fit_present, DECILES)) if len(fit_present) else np.zeros(1)
    return {
        "name": name,
        "kind": NUMERIC,
        "edges": [float(e) for e in edges],
        "shares": [0.0] * (len(edges) + 2),
        "min": float(present.min()) if len(present) else None,
        "max": float(present.max()) if len(present) else None,
        "missing_rate": float(1 - len(present) / len(column)),
    }


def _categorical(
    name: str,
    column: np.ndarray,
    fit: np.ndarray,
    classes: Sequence[Any] | None,
    labels: Sequence[str] | None,
) -> dict[str, Any]:
    missing = np.array([v is None or v != v for v in column.tolist()], dtype=bool)
    if classes is not None:
        values: list[Any] = [c if isinstance(c, str) else int(c) for c in classes]
        complete = True
    else:
        found, counts = np.unique(column[fit][~missing[fit]].astype(str), return_counts=True)
        ranked = np.argsort(-counts, kind="stable")
        values = [str(found[i]) for i in ranked[:TOP_VALUES]]
        complete = len(found) <= TOP_VALUES
    entry: dict[str, Any] = {
        "name": name,
        "kind": CATEGORICAL,
        "values": values,
        "shares": [0.0] * (len(values) + 2),
        "complete": complete,
        "missing_rate": float(missing.mean()),
    }
    if labels is not None:
        entry["labels"] = [str(label) for label in labels]
    return entry
