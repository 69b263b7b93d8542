"""What kind of answer a model gives: its task, and the names of several regression targets.

The task is the estimator's own kind (scikit-learn's `is_classifier`, `is_regressor`,
`is_outlier_detector`, `is_clusterer`); several targets are read from the library's answer on the
sample, so that every multi-output regressor (a `Ridge` fitted on a 2-D target, a forest, a
`MultiOutputRegressor`) is found the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sklearn.base import is_classifier, is_clusterer, is_outlier_detector, is_regressor
from sklearn.multioutput import ClassifierChain, MultiOutputClassifier

from ml.export.convert import final_estimator
from ml.export.errors import ExportError

__all__ = ["ANSWERS", "TASKS", "detect_task", "target_names"]

CLASSIFICATION = "classification"
REGRESSION = "regression"
ANOMALY = "anomaly_detection"
CLUSTERING = "clustering"
TASKS = (CLASSIFICATION, REGRESSION, ANOMALY, CLUSTERING)
# The tasks whose answers a `task` override may swap: both are a label or a number per row.
SWAPPABLE = frozenset({CLASSIFICATION, REGRESSION})
ANSWERS = {
    CLASSIFICATION: "predict / predict_proba",
    REGRESSION: "predict",
    ANOMALY: "predict / decision_function",
    CLUSTERING: "predict / transform",
}


def detect_task(estimator: Any, task: str | None) -> tuple[str, str]:
    """The task of `estimator`, which decides its answers, and the task metadata.json states:
    `task` where it may override it; raises ExportError."""
    if task is not None and task not in TASKS:
        raise ExportError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    name = type(final_estimator(estimator)).__name__
    if is_classifier(estimator):
        _refuse_several_class_targets(estimator)
        detected = CLASSIFICATION
    elif is_regressor(estimator):
        detected = REGRESSION
    elif is_outlier_detector(estimator):
        detected = ANOMALY
    elif is_clusterer(estimator):
        if not hasattr(estimator, "predict") or not hasattr(estimator, "transform"):
            raise ExportError(
                f"{name} cannot answer new rows (no predict and transform); only clusterers "
                "that assign new rows, such as KMeans and MiniBatchKMeans, export"
            )
        detected = CLUSTERING
    else:
        raise ExportError(f"{name} is not a classifier, regressor, outlier detector or clusterer")
    if task is None or task == detected:
        return detected, detected
    if task in SWAPPABLE and detected in SWAPPABLE:
        return detected, task
    raise ExportError(f"task {task!r} does not fit {name}, whose task is {detected!r}")


def _refuse_several_class_targets(estimator: Any) -> None:
    """Classifiers fitted on several targets answer a label per target; not supported."""
    final = final_estimator(estimator)
    several = isinstance(final, MultiOutputClassifier | ClassifierChain) or isinstance(
        getattr(final, "classes_", None), list
    )
    if several:
        raise ExportError(
            f"{type(final).__name__} predicts several targets of classes, which the server does "
            "not support\n  try: export one classifier per target"
        )


def target_names(n_targets: int, targets: Sequence[str] | None) -> list[str] | None:
    """metadata.json's `targets` for a regressor answering `n_targets` values a row: the names
    given, else y0, y1, ...; None for a single target."""
    if targets is not None:
        names = [str(t) for t in targets]
        if len(names) != n_targets:
            raise ExportError(f"{len(names)} targets given, the model predicts {n_targets}")
        if len(set(names)) != len(names):
            raise ExportError(f"target names must differ: {names}")
        return names if n_targets > 1 else None
    return [f"y{i}" for i in range(n_targets)] if n_targets > 1 else None
