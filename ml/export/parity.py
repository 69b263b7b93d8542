"""The parity check of the export tool: onnxruntime's answers against the library's own.

Both sides are put in one form, `Answers`: a discrete answer per row compared exactly (class,
outlier decision, cluster) and numbers compared within tolerance (probabilities, predictions,
scores, distances). A failure says how many rows disagree, and the worst row and field with both
values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml.export.errors import ExportError
from ml.export.tasks import ANOMALY, CLASSIFICATION, CLUSTERING, REGRESSION

__all__ = [
    "Answers",
    "ParityError",
    "check_parity",
    "class_key",
    "library_answers",
    "onnx_answers",
    "probability_matrix",
]


class ParityError(ExportError):
    """onnxruntime and the library disagree on the sample rows."""


@dataclass(frozen=True, slots=True)
class Answers:
    """One model's answers on the sample rows, in a form both sides share."""

    labels: np.ndarray | None  # [N] compared exactly, as text
    label_field: str
    numbers: np.ndarray | None  # [N, K] compared within tolerance
    number_fields: list[str]  # the name of each of the K columns

    def take(self, rows: np.ndarray) -> Answers:
        """The answers of some rows only."""
        labels = None if self.labels is None else self.labels[rows]
        numbers = None if self.numbers is None else self.numbers[rows]
        return Answers(labels, self.label_field, numbers, self.number_fields)


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


def _fields(
    task: str, classes: Sequence[Any] | None, targets: Sequence[str] | None, k: int
) -> tuple[str, list[str]]:
    """The name of the discrete answer and of each number column, for messages."""
    if task == CLASSIFICATION:
        return "prediction", [f"probabilities[{c}]" for c in classes or []]
    if task == ANOMALY:
        return "prediction", ["score"]
    if task == CLUSTERING:
        return "prediction", [f"distances[{i}]" for i in range(k)]
    return "prediction", [f"prediction[{t}]" for t in targets] if targets else ["prediction"]


def library_answers(
    estimator: Any,
    rows: Any,
    task: str,
    *,
    classes: Sequence[Any] | None,
    targets: Sequence[str] | None,
) -> Answers:
    """What the library answers on `rows`; raises ExportError if it cannot."""
    try:
        predicted = np.asarray(estimator.predict(rows))
        if task == CLASSIFICATION:
            # Classifiers without predict_proba (LinearSVC) are checked on their labels alone.
            has_proba = hasattr(estimator, "predict_proba")
            numbers = np.asarray(estimator.predict_proba(rows)) if has_proba else None
        elif task == ANOMALY:
            numbers = np.asarray(estimator.decision_function(rows)).reshape(-1, 1)
        elif task == CLUSTERING:
            numbers = np.asarray(estimator.transform(rows))
        else:
            numbers, predicted = predicted.reshape(len(predicted), -1), None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ExportError(f"the model could not predict on the sample: {exc}") from exc
    k = 0 if numbers is None else numbers.shape[1]
    label_field, fields = _fields(task, classes, targets, k)
    if task == CLASSIFICATION and numbers is None:
        fields = []
    labels = None if predicted is None else predicted.reshape(-1)
    return Answers(labels, label_field, _floats(numbers), fields)


def onnx_answers(
    outputs: Sequence[Any],
    task: str,
    *,
    classes: Sequence[Any] | None,
    targets: Sequence[str] | None,
    with_proba: bool = True,
) -> Answers:
    """onnxruntime's outputs in the same form: a label and a number output per task (skl2onnx
    writes label then probabilities / scores / distances; a regressor has one output)."""
    if task == REGRESSION:
        numbers = np.asarray(outputs[0], dtype=np.float64)
        numbers = numbers.reshape(numbers.shape[0], -1)
        _, fields = _fields(task, None, targets, numbers.shape[1])
        return Answers(None, "prediction", numbers, fields)
    labels = np.asarray(outputs[0]).reshape(-1)
    if task == CLASSIFICATION:
        numbers = probability_matrix(outputs[1], classes or []) if with_proba else None
    else:
        numbers = np.asarray(outputs[1], dtype=np.float64)
        numbers = numbers.reshape(numbers.shape[0], -1)
    k = 0 if numbers is None else numbers.shape[1]
    label_field, fields = _fields(task, classes, targets, k)
    return Answers(labels, label_field, numbers, fields if numbers is not None else [])


def _floats(values: np.ndarray | None) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.float64)


def check_parity(expected: Answers, got: Answers, *, rtol: float, atol: float, what: str) -> None:
    """Raise ParityError unless `got` (onnxruntime) matches `expected` (the library); `what`
    names the rows, e.g. "sample rows"."""
    n_rows = len(expected.labels if expected.labels is not None else expected.numbers)
    bad = np.zeros(n_rows, dtype=bool)
    worst: _Worst | None = None
    if expected.labels is not None and got.labels is not None:
        want = [class_key(v) for v in expected.labels]
        have = [class_key(v) for v in got.labels]
        label_bad = np.array([w != h for w, h in zip(want, have, strict=True)], dtype=bool)
        bad |= label_bad
        if label_bad.any():
            row = int(np.flatnonzero(label_bad)[0])
            worst = _Worst(row, expected.label_field, want[row], have[row])
    if expected.numbers is not None and got.numbers is not None:
        numbers_bad, numbers_worst = _compare(
            expected.numbers, got.numbers, expected.number_fields, rtol, atol
        )
        bad |= numbers_bad
        worst = worst or numbers_worst
    if worst is None:
        return
    raise ParityError(
        f"parity check failed: {int(bad.sum())} of {n_rows} {what} disagree between the "
        f"model and its ONNX conversion (rtol={rtol}, atol={atol})\n"
        f"  worst: row {worst.row}, {worst.field}: {worst.expected!r} expected, "
        f"{worst.got!r} from ONNX"
    )


def _compare(
    want: np.ndarray, have: np.ndarray, names: Sequence[str], rtol: float, atol: float
) -> tuple[np.ndarray, _Worst | None]:
    """Rows out of tolerance, and the value furthest beyond it."""
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
