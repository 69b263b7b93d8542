"""`samples.json`: rows the export compared, and what `/predict/batch` must answer for them.

The server runs them after warm-up and refuses the version if its answers differ. Expected values
are onnxruntime's own outputs at export, written exactly (float32 values as the doubles they are),
so only a different runtime or a different file can fail them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ml.export.parity import probability_matrix

__all__ = ["MAX_SAMPLES", "build_samples"]

MAX_SAMPLES = 32


def build_samples(
    feed: Mapping[str, np.ndarray],
    features: Sequence[str],
    outputs: Sequence[Any],
    *,
    per_column: bool,
    classes: Sequence[str | int] | None,
    labels: Sequence[str] | None,
    rtol: float,
    atol: float,
) -> dict[str, Any] | None:
    """The content of samples.json, for up to MAX_SAMPLES rows spread over the sample; None if
    every row holds a NaN or an infinity (JSON cannot carry them, and the server refuses an
    empty samples.json).

    `classes` are the graph's classes in probability-column order (None for a regressor);
    `labels` the names metadata.json gives them, if any.
    """
    rows = _pick_rows(feed)
    if not rows:
        return None
    if per_column:
        instances: list[Any] = [
            {name: _plain(feed[name][row, 0]) for name in features} for row in rows
        ]
    else:
        (array,) = feed.values()
        instances = [[_plain(v) for v in array[row]] for row in rows]
    expected: dict[str, Any]
    if classes is None:
        values = np.asarray(outputs[0]).reshape(len(next(iter(feed.values()))), -1)
        expected = {"predictions": [float(values[row, 0]) for row in rows]}
    else:
        names = _class_names(classes, labels)
        position = {str(c): i for i, c in enumerate(classes)}
        predicted = np.asarray(outputs[0]).reshape(-1)
        probabilities = probability_matrix(outputs[1], classes)
        expected = {
            "predictions": [names[position[str(predicted[row])]] for row in rows],
            "probabilities": [
                {str(n): float(p) for n, p in zip(names, probabilities[row], strict=True)}
                for row in rows
            ],
        }
    return {"instances": instances, "expected": expected, "rtol": rtol, "atol": atol}


def _class_names(classes: Sequence[str | int], labels: Sequence[str] | None) -> list[Any]:
    """What the server calls each class: labels[i], else the class itself (an int stays an int
    in `predictions`; probabilities are keyed by its decimal string)."""
    if labels is not None:
        return list(labels)
    return [c if isinstance(c, str) else int(c) for c in classes]


def _pick_rows(feed: Mapping[str, np.ndarray]) -> list[int]:
    """Rows without NaN or infinity (JSON cannot carry them), spread evenly over the sample."""
    n_rows = len(next(iter(feed.values())))
    usable = np.ones(n_rows, dtype=bool)
    for array in feed.values():
        if array.dtype.kind == "f":
            usable &= np.isfinite(array).reshape(n_rows, -1).all(axis=1)
    candidates = np.flatnonzero(usable)
    if len(candidates) <= MAX_SAMPLES:
        return [int(i) for i in candidates]
    spread = np.linspace(0, len(candidates) - 1, MAX_SAMPLES).round().astype(int)
    return [int(candidates[i]) for i in spread]


def _plain(value: Any) -> Any:
    """A numpy value as the JSON value a request carries (float32 exactly, as a double)."""
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.integer):
        return int(value)
    return str(value)
