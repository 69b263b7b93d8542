"""`samples.json`: rows the export compared, and what `/predict/batch` must answer for them.

The server runs them after warm-up and refuses the version if its answers differ. Instances are
the rows as the user wrote them (`null` where a value is missing, for a version that takes missing
values); expected values are onnxruntime's own outputs at export, written exactly (float32 values
as the doubles they are), so only a different runtime or a different file can fail them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ml.export.parity import Answers
from ml.export.tasks import ANOMALY, CLASSIFICATION, CLUSTERING

__all__ = ["MAX_SAMPLES", "build_samples", "pick_rows"]

MAX_SAMPLES = 32


def pick_rows(usable: np.ndarray) -> list[int]:
    """Up to MAX_SAMPLES of the usable rows, spread evenly over the sample."""
    candidates = np.flatnonzero(usable)
    if len(candidates) <= MAX_SAMPLES:
        return [int(i) for i in candidates]
    spread = np.linspace(0, len(candidates) - 1, MAX_SAMPLES).round().astype(int)
    return [int(candidates[i]) for i in spread]


def build_samples(
    instances: Sequence[Any],
    answers: Answers,
    rows: Sequence[int],
    task: str,
    *,
    classes: Sequence[str | int] | None,
    labels: Sequence[str] | None,
    targets: Sequence[str] | None,
    rtol: float,
    atol: float,
) -> dict[str, Any] | None:
    """The content of samples.json for `rows` of the sample; None without rows (the server
    refuses an empty samples.json).

    `answers` are onnxruntime's; `classes` the graph's classes in probability-column order (for
    a classifier), `labels` the names metadata.json gives them, `targets` the names of several
    regression targets.
    """
    if not rows:
        return None
    expected = _expected(answers.take(np.asarray(rows)), task, classes, labels, targets)
    return {
        "instances": [instances[row] for row in rows],
        "expected": expected,
        "rtol": rtol,
        "atol": atol,
    }


def _expected(
    answers: Answers,
    task: str,
    classes: Sequence[str | int] | None,
    labels: Sequence[str] | None,
    targets: Sequence[str] | None,
) -> dict[str, Any]:
    numbers = answers.numbers
    if task == CLASSIFICATION:
        names = _class_names(classes or [], labels)
        position = {str(c): i for i, c in enumerate(classes or [])}
        expected: dict[str, Any] = {
            "predictions": [names[position[str(p)]] for p in answers.labels]
        }
        if numbers is not None:
            expected["probabilities"] = [
                {str(n): float(p) for n, p in zip(names, row, strict=True)} for row in numbers
            ]
        return expected
    if task == ANOMALY:
        decisions = [int(v) for v in answers.labels]
        return {
            "predictions": decisions,
            "outliers": [d == -1 for d in decisions],
            "scores": [float(v) for v in numbers[:, 0]],
        }
    if task == CLUSTERING:
        return {
            "predictions": [int(v) for v in answers.labels],
            "distances": [{str(i): float(d) for i, d in enumerate(row)} for row in numbers],
        }
    if targets:
        return {
            "predictions": [
                {t: float(v) for t, v in zip(targets, row, strict=True)} for row in numbers
            ]
        }
    return {"predictions": [float(v) for v in numbers[:, 0]]}


def _class_names(classes: Sequence[str | int], labels: Sequence[str] | None) -> list[Any]:
    """What the server calls each class: labels[i], else the class itself (an int stays an int
    in `predictions`; probabilities are keyed by its decimal string)."""
    if labels is not None:
        return list(labels)
    return [c if isinstance(c, str) else int(c) for c in classes]
