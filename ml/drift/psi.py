"""Population stability index between a profile's shares and a window's counts.

Both sides are smoothed the same way before the logarithm: each bin gets half a row
(`SMOOTHING`) on top of its count, on the reference's row count and on the window's, so that an
empty bin on either side gives a large but finite term instead of an infinity. The same
function serves the export (calibrating thresholds) and the server (judging windows).
"""

from __future__ import annotations

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


def threshold_for(rows: int, sizes: Sequence[int], thresholds: Sequence[float]) -> float:
    """The alarm threshold of a window of `rows` rows, from thresholds calibrated at window
    `sizes` (ascending): interpolated linearly in 1/rows, the scale PSI's noise follows;
    beyond the smallest size it grows as 1/rows, beyond the largest it stays as calibrated."""
    if rows <= sizes[0]:
        return float(thresholds[0]) * sizes[0] / max(rows, 1)
    if rows >= sizes[-1]:
        return float(thresholds[-1])
    inverse = [1.0 / s for s in reversed(sizes)]
    return float(np.interp(1.0 / rows, inverse, list(reversed(thresholds))))
