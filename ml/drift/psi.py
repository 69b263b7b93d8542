"""Population stability index between a profile's shares and a window's counts.

Both sides are smoothed the same way before the logarithm: each bin gets half a row
(`SMOOTHING`) on top of its count, on the reference's row count and on the window's, so that an
empty bin on either side gives a large but finite term instead of an infinity. The same
function serves the export (calibrating thresholds) and the server (judging windows).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

import numpy as np

SMOOTHING = 0.5


def smoothed(counts: np.ndarray, alpha: float = SMOOTHING) -> np.ndarray:
    """Shares of `counts` (last axis) with `alpha` rows added to every bin."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=-1, keepdims=True)
    return (counts + alpha) / (total + alpha * counts.shape[-1])


def psi(
    reference_shares: np.ndarray, reference_rows: int, counts: np.ndarray
) -> np.ndarray | float:
    """PSI of the window `counts` (or of each row of a 2-D array of windows) against the
    reference's shares, the reference standing for `reference_rows` rows."""
    expected = smoothed(np.asarray(reference_shares, dtype=np.float64) * reference_rows)
    actual = smoothed(counts)
    value = ((actual - expected) * np.log(actual / expected)).sum(axis=-1)
    return float(value) if np.ndim(value) == 0 else value


def segment_psi(
    expected: np.ndarray, counts: np.ndarray, starts: np.ndarray, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """PSI of several quantities at once, their bins laid end to end (`starts`, `sizes`):
    `expected` holds their smoothed reference shares. Returns each one's PSI and row count."""
    counts = counts.astype(np.float64)
    seen = np.add.reduceat(counts, starts)
    actual = (counts + SMOOTHING) / np.repeat(seen + SMOOTHING * sizes, sizes)
    terms = (actual - expected) * np.log(actual / expected)
    return np.add.reduceat(terms, starts), seen


def threshold_for(rows: int, sizes: Sequence[int], thresholds: Sequence[float]) -> float:
    """The alarm threshold of a window of `rows` rows, from thresholds calibrated at window
    `sizes` (ascending): interpolated linearly in 1/rows, the scale PSI's noise follows;
    beyond the smallest size it grows as 1/rows, beyond the largest it stays as calibrated."""
    if rows <= sizes[0]:
        return float(thresholds[0]) * sizes[0] / max(rows, 1)
    if rows >= sizes[-1]:
        return float(thresholds[-1])
    above = bisect_left(sizes, rows)
    small, large = sizes[above - 1], sizes[above]
    weight = (1 / small - 1 / rows) / (1 / small - 1 / large)
    return float(thresholds[above - 1] + weight * (thresholds[above] - thresholds[above - 1]))
