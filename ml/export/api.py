"""`export_model`: a fitted estimator to a new version folder of the model store.

The model is converted, run with onnxruntime on sample rows, compared with the library, and only
then written, atomically, as `<store>/<name>/<version>/`.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from skl2onnx.common.data_types import (
    DataType,
    DoubleTensorType,
    FloatTensorType,
    Int64TensorType,
    StringTensorType,
)
from sklearn.base import is_classifier, is_regressor
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import FeatureUnion, Pipeline

from ml.export.boosting import BOOSTING_LIBRARIES
from ml.export.convert import InitialTypes, convert, final_estimator, graph_classes, step_paths
from ml.export.errors import ExportError
from ml.export.parity import ParityError, check_parity, class_key
from ml.export.rollout import RolloutSettings, check_rollout, ship
from ml.export.samples import build_samples
from ml.export.writer import pick_version, write_version
from ml.store import MODEL_NAME, is_valid_model_name

__all__ = ["ExportError", "RolloutSettings", "export_model"]

TASKS = ("classification", "regression")
FRAMEWORK_DISTRIBUTIONS = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime")
FLOAT32_HINT = (
    "  try: float32 is the cause: the same model converted for float64 input passes; export "
    "with double=True (model-export --double)"
)
OTHER_HINT = (
    "  try: check that the model was fitted on data like the sample; a newer converter "
    "(skl2onnx, onnxmltools) may fix the difference"
)

Feed = dict[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class _Inputs:
    """What the ONNX model is fed, and what the library itself is fed, for the same rows."""

    features: list[str]
    initial_types: InitialTypes
    feed: Feed
    sk_input: Any
    per_column: bool


@dataclass(frozen=True, slots=True)
class _Checked:
    """A converted model that passed the parity check, with what onnxruntime answered."""

    model: onnx.ModelProto
    outputs: list[Any]
    classes: list[str | int] | None


def export_model(
    estimator: Any,
    store: Path,
    name: str,
    sample: Any,
    *,
    version: int | None = None,
    feature_names: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    task: str | None = None,
    description: str | None = None,
    metrics: dict[str, float] | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    double: bool = False,
    rollout: RolloutSettings | None = None,
) -> Path:
    """Convert `estimator`, check it against its own predictions on `sample`, write the next
    version: model.onnx, metadata.json and samples.json.

    `sample` is a 2-D numpy array (one input named "input"), or a pandas DataFrame: one input
    per column when the pipeline holds a ColumnTransformer, else one input. Numbers are fed as
    float32, or float64 with `double`. Returns the written version folder; raises ExportError,
    writing nothing, on any failure.

    With `rollout`, the version starts as the candidate of a rollout with those settings, and
    answers no more than its share of traffic from the moment it appears (see ml.export.rollout).
    """
    if not is_valid_model_name(name):
        raise ExportError(f"model name {name!r} must match {MODEL_NAME.pattern}")
    if task is not None and task not in TASKS:
        raise ExportError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    classifier = is_classifier(estimator)
    if not classifier and not is_regressor(estimator):
        raise ExportError(f"{type(estimator).__name__} is neither a classifier nor a regressor")
    if labels is not None and not classifier:
        raise ExportError("labels are only for classifiers")
    model_dir = Path(store) / name
    version = pick_version(model_dir, version)
    if rollout is not None:
        check_rollout(Path(store), name, version, rollout)

    inputs = _inputs(estimator, sample, feature_names, double=double)
    try:
        checked = _convert_and_check(
            estimator, inputs, name, description, classifier=classifier, rtol=rtol, atol=atol
        )
    except ParityError as exc:
        hint = OTHER_HINT
        if not double and _float32_is_the_cause(
            estimator, sample, feature_names, name, classifier=classifier, rtol=rtol, atol=atol
        ):
            hint = FLOAT32_HINT
        raise ParityError(f"{exc}\n{hint}") from exc

    metadata: dict[str, Any] = {"task": task or ("classification" if classifier else "regression")}
    metadata["features"] = inputs.features
    names = _label_names(checked.classes, labels)
    if names is not None:
        metadata["labels"] = names
    if description is not None:
        metadata["description"] = description
    if metrics is not None:
        metadata["metrics"] = {str(k): float(v) for k, v in metrics.items()}
    metadata["created_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    metadata["framework"] = _framework_versions(estimator)
    samples = build_samples(
        inputs.feed,
        inputs.features,
        checked.outputs,
        per_column=inputs.per_column,
        classes=checked.classes,
        labels=names,
        rtol=rtol,
        atol=atol,
    )
    try:
        # allow_nan=False: NaN or Infinity would make the files invalid JSON.
        metadata_text = json.dumps(metadata, indent=2, allow_nan=False) + "\n"
        files = {
            "model.onnx": checked.model.SerializeToString(),
            "metadata.json": metadata_text.encode(),
        }
        if samples is not None:
            compact = json.dumps(samples, separators=(",", ":"), allow_nan=False)
            files["samples.json"] = (compact + "\n").encode()
    except ValueError as exc:
        raise ExportError(f"metadata.json or samples.json would not be valid JSON: {exc}") from exc
    if rollout is not None:
        return ship(Path(store), name, version, files, rollout)
    return write_version(model_dir, version, files)


def _inputs(
    estimator: Any, sample: Any, feature_names: Sequence[str] | None, *, double: bool
) -> _Inputs:
    if isinstance(sample, pd.DataFrame) and has_column_transformer(estimator):
        features = [str(c) for c in sample.columns]
        if feature_names is not None and list(feature_names) != features:
            raise ExportError(
                "with a ColumnTransformer the inputs are the DataFrame's columns "
                f"{features}, not {list(feature_names)}"
            )
        initial_types, feed, sk_input = _per_column_inputs(sample, double=double)
        return _Inputs(features, initial_types, feed, sk_input, per_column=True)
    features, initial_types, feed, sk_input = _single_input(
        estimator, sample, feature_names, double=double
    )
    return _Inputs(features, initial_types, feed, sk_input, per_column=False)


def _convert_and_check(
    estimator: Any,
    inputs: _Inputs,
    name: str,
    description: str | None,
    *,
    classifier: bool,
    rtol: float,
    atol: float,
) -> _Checked:
    """Convert, run with onnxruntime, and compare; raises ExportError (ParityError) on failure.

    Classifiers answer labels and a plain [N, C] probability tensor (no ZipMap).
    """
    model = convert(
        estimator,
        inputs.initial_types,
        name=name,
        description=description,
        zipmap=False,
        classifier=classifier,
    )
    classes = _check_classes(estimator, graph_classes(model)) if classifier else None
    outputs = _run(model, inputs.feed)
    check_parity(estimator, inputs.sk_input, outputs, classes=classes, rtol=rtol, atol=atol)
    return _Checked(model, outputs, classes)


def _float32_is_the_cause(
    estimator: Any,
    sample: Any,
    feature_names: Sequence[str] | None,
    name: str,
    *,
    classifier: bool,
    rtol: float,
    atol: float,
) -> bool:
    """Whether the model converted for float64 input passes where the float32 one failed."""
    try:
        inputs = _inputs(estimator, sample, feature_names, double=True)
        _convert_and_check(
            estimator, inputs, name, None, classifier=classifier, rtol=rtol, atol=atol
        )
    except ExportError:
        return False
    return True


def _check_classes(estimator: Any, graph: list[str | int] | None) -> list[str | int]:
    """The graph's classes in probability-column order, checked against the estimator's; the
    estimator's where no classifier operator names them (MLP and k-NN pick the label from a
    constant of the classes, which is what the server reads then)."""
    fitted = [class_key(c) for c in final_estimator(estimator).classes_]
    classes = graph if graph is not None else list(final_estimator(estimator).classes_)
    if [class_key(c) for c in classes] != fitted:
        raise ExportError(f"the ONNX graph lists the classes {classes}, the model {fitted}")
    return [c if isinstance(c, str) else int(c) for c in classes]


def _label_names(classes: list[str | int] | None, labels: Sequence[str] | None) -> list[str] | None:
    """metadata.json's labels: the names given, or string classes as they are. Integer classes
    get none, so that the server answers them as numbers, as the model's own predict does."""
    if classes is None:
        return None
    if labels is not None:
        if len(labels) != len(classes):
            raise ExportError(f"{len(labels)} labels given for {len(classes)} classes {classes}")
        return [str(label) for label in labels]
    if all(isinstance(c, str) for c in classes):
        return [str(c) for c in classes]
    return None


def _run(model: onnx.ModelProto, feed: Feed) -> list[Any]:
    try:
        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        return list(session.run(None, feed))
    except Exception as exc:  # onnxruntime raises its own untyped errors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ExportError(f"onnxruntime could not run the converted model: {first}") from exc


def has_column_transformer(estimator: Any) -> bool:
    """True if a ColumnTransformer sits anywhere in the (nested) pipeline."""
    if isinstance(estimator, ColumnTransformer):
        return True
    if isinstance(estimator, Pipeline):
        return any(has_column_transformer(step) for _, step in estimator.steps)
    if isinstance(estimator, FeatureUnion):
        return any(has_column_transformer(part) for _, part in estimator.transformer_list)
    return False


def _per_column_inputs(
    sample: pd.DataFrame, *, double: bool
) -> tuple[InitialTypes, Feed, pd.DataFrame]:
    """One [None, 1] input per column, typed by its dtype, as skl2onnx maps named columns."""
    initial_types: InitialTypes = []
    feed: Feed = {}
    # scikit-learn sees the same float32 values as onnxruntime, so parity measures the model only.
    sk_input = sample.copy()
    for column in sample.columns:
        values = sample[column]
        dtype = values.dtype
        if pd.api.types.is_bool_dtype(dtype):
            raise ExportError(f"column {column!r}: booleans are not supported, use int or str")
        if pd.api.types.is_integer_dtype(dtype):
            kind: DataType = Int64TensorType([None, 1])
            array = values.to_numpy(dtype=np.int64)
        elif pd.api.types.is_float_dtype(dtype):
            kind = DoubleTensorType([None, 1]) if double else FloatTensorType([None, 1])
            array = values.to_numpy(dtype=np.float64 if double else np.float32)
        elif pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
            if not all(isinstance(v, str) for v in values):
                raise ExportError(f"column {column!r} mixes strings with other values")
            kind = StringTensorType([None, 1])
            array = values.to_numpy(dtype=object)
        else:
            raise ExportError(f"column {column!r} has unsupported dtype {dtype}")
        initial_types.append((str(column), kind))
        feed[str(column)] = array.reshape(-1, 1)
        if array.dtype != object:
            sk_input[column] = array
    return initial_types, feed, sk_input


def _single_input(
    estimator: Any, sample: Any, feature_names: Sequence[str] | None, *, double: bool
) -> tuple[list[str], InitialTypes, Feed, Any]:
    """One float [None, F] input named "input", with the feature names that describe it."""
    columns = [str(c) for c in sample.columns] if isinstance(sample, pd.DataFrame) else None
    try:
        array = np.asarray(sample, dtype=np.float64 if double else np.float32)
    except (TypeError, ValueError) as exc:
        raise ExportError(
            f"sample must be numeric (use a ColumnTransformer pipeline for string columns): {exc}"
        ) from exc
    if array.ndim != 2 or array.shape[0] == 0:
        raise ExportError(f"sample must be a non-empty 2-D array, got shape {array.shape}")
    n_features = array.shape[1]
    expected = getattr(estimator, "n_features_in_", None)
    if expected is not None and expected != n_features:
        raise ExportError(f"sample has {n_features} columns, the model expects {expected}")

    fitted_names = getattr(estimator, "feature_names_in_", None)
    fitted = [str(c) for c in fitted_names] if fitted_names is not None else None
    if feature_names is not None:
        features = [str(f) for f in feature_names]
    else:
        features = columns or fitted or [f"x{i}" for i in range(n_features)]
    if len(features) != n_features:
        raise ExportError(f"{len(features)} feature names for {n_features} columns")
    if fitted is not None and features != fitted:
        raise ExportError(f"features {features} differ from those the model was fitted on {fitted}")

    # Give scikit-learn the container it was fitted with, or it warns about feature names.
    sk_input: Any = pd.DataFrame(array, columns=fitted) if fitted is not None else array
    kind = DoubleTensorType if double else FloatTensorType
    return features, [("input", kind([None, n_features]))], {"input": array}, sk_input


def _framework_versions(estimator: Any) -> dict[str, str]:
    """Versions of what produced the model, for whoever debugs it later."""
    versions = {dist: _distribution_version(dist) for dist in FRAMEWORK_DISTRIBUTIONS}
    libraries = {type(step).__module__.partition(".")[0] for step, _ in step_paths(estimator)}
    boosting = sorted(libraries.intersection(BOOSTING_LIBRARIES))
    if boosting:
        versions["onnxmltools"] = _distribution_version("onnxmltools")
    for library in boosting:
        # By module: xgboost is installed as the `xgboost-cpu` distribution on Linux.
        versions[library] = str(getattr(sys.modules.get(library), "__version__", "unknown"))
    versions["python"] = platform.python_version()
    return versions


def _distribution_version(dist: str) -> str:
    try:
        return dist_version(dist)
    except PackageNotFoundError:
        return "unknown"
