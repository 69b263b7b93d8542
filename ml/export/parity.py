"""The parity check of the export tool: onnxruntime's answers against the library's own.

A failure says how many rows disagree, the worst row and field with both values, and, when the
model was fed float32, that a double-precision input may be the way out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml.export.errors import ExportError

__all__ = ["ParityError", "check_parity", "class_key", "probability_matrix"]


class ParityError(ExportError):
    """onnxruntime and the library disagree on the sample rows."""


@dataclass(frozen=True, slots=True)
class _Worst:
    row: int
    field: str
    expected: Any
    got: Any


def class_key(value: Any) -> str:
    """A class as text, the same for the library and the graph: converters write boolean
    classes as the integers 0 and 1."""
    if isinstance(value, bool | np.bool_):
        return str(int(value))
    return str(value)


def probability_matrix(output: Any, classes: Sequence[Any]) -> np.ndarray:
    """A [N, C] probability output, also from ZipMap's list of {class: probability} per row."""
    if isinstance(output, list):
        return np.array([[row[c] for c in classes] for row in output], dtype=np.float64)
    return np.asarray(output, dtype=np.float64)


def check_parity(
    estimator: Any,
    sk_input: Any,
    outputs: Sequence[Any],
    *,
    classes: Sequence[Any] | None,
    rtol: float,
    atol: float,
) -> None:
    """Raise ParityError unless onnxruntime's `outputs` match `estimator` on `sk_input`."""
    try:
        expected = np.asarray(estimator.predict(sk_input))
        # Classifiers without predict_proba (LinearSVC) are checked on their labels alone.
        has_proba = classes is not None and hasattr(estimator, "predict_proba")
        expected_proba = estimator.predict_proba(sk_input) if has_proba else None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ExportError(f"the model could not predict on the sample: {exc}") from exc

    n_rows = len(expected)
    bad = np.zeros(n_rows, dtype=bool)
    worst: _Worst | None = None
    if classes is not None:
        got_labels = np.asarray(outputs[0]).reshape(-1)
        # Compared as text: int classes come back as int64, string classes as str.
        label_bad = np.array(
            [
                class_key(w) != class_key(g)
                for w, g in zip(expected.reshape(-1), got_labels, strict=True)
            ]
        )
        bad |= label_bad
        if label_bad.any():
            row = int(np.flatnonzero(label_bad)[0])
            worst = _Worst(row, "prediction", class_key(expected[row]), class_key(got_labels[row]))
        if expected_proba is not None:
            names = [f"probabilities[{c}]" for c in classes]
            numbers_bad, numbers_worst = _compare(
                expected_proba, probability_matrix(outputs[1], classes), names, rtol, atol
            )
            bad |= numbers_bad
            worst = worst or numbers_worst
    else:
        bad, worst = _compare(expected, outputs[0], ["prediction"], rtol, atol)
    if worst is None:
        return
    raise ParityError(
        f"parity check failed: {int(bad.sum())} of {n_rows} sample rows disagree between the "
        f"model and its ONNX conversion (rtol={rtol}, atol={atol})\n"
        f"  worst: row {worst.row}, {worst.field}: {worst.expected!r} expected, "
        f"{worst.got!r} from ONNX"
    )


def _compare(
    expected: Any, got: Any, names: Sequence[str], rtol: float, atol: float
) -> tuple[np.ndarray, _Worst | None]:
    """Rows out of tolerance, and the value furthest beyond it."""
    want = np.asarray(expected, dtype=np.float64)
    have = np.asarray(got, dtype=np.float64)
    want = want.reshape(want.shape[0], -1)
    have = have.reshape(have.shape[0], -1)
    if want.shape != have.shape:
        raise ParityError(f"the model answers shape {want.shape}, its ONNX conversion {have.shape}")
    excess = np.abs(have - want) - (atol + rtol * np.abs(want))
    excess[np.isnan(have) != np.isnan(want)] = np.inf
    excess[np.isnan(have) & np.isnan(want)] = 0.0
    bad = (excess > 0).any(axis=1)
    if not bad.any():
        return bad, None
    row, col = np.unravel_index(int(np.argmax(excess)), excess.shape)
    name = names[col] if len(names) == want.shape[1] else f"{names[0]}[{col}]"
    return bad, _Worst(int(row), name, float(want[row, col]), float(have[row, col]))
