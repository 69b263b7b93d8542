"""Turn a fitted scikit-learn model into a new version folder of the model store.

The one place in `ml/` that imports scikit-learn, skl2onnx, pandas and joblib: the server runs on
onnxruntime alone. The model is converted, run with onnxruntime on sample rows, compared with
scikit-learn, and only then written, atomically, as `<store>/<name>/<version>/`.

    model-export model.joblib --name iris --sample rows.csv
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import secrets
import shutil
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnxruntime as ort
import pandas as pd
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import (
    DataType,
    FloatTensorType,
    Int64TensorType,
    StringTensorType,
)
from sklearn.base import is_classifier, is_regressor
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import FeatureUnion, Pipeline

from ml.store import MODEL_NAME, is_valid_model_name

__all__ = ["ExportError", "export_model", "main"]

TASKS = ("classification", "regression")
# Opset 18 (ai.onnx.ml 3) loads on every onnxruntime the server allows (>= 1.19), not only on the
# newest one installed where the model was exported.
TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
FRAMEWORK_DISTRIBUTIONS = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime")

Feed = dict[str, np.ndarray]
InitialTypes = list[tuple[str, DataType]]


class ExportError(Exception):
    """Export refused: bad arguments, failed conversion or parity check, or a write error."""


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
) -> Path:
    """Convert `estimator`, check it against scikit-learn on `sample`, write the next version.

    `sample` is a 2-D numpy array (one float input named "input"), or a pandas DataFrame: one
    input per column when the pipeline holds a ColumnTransformer, else one float input.
    Returns the written version folder; raises ExportError, writing nothing, on any failure.
    """
    if not is_valid_model_name(name):
        raise ExportError(f"model name {name!r} must match {MODEL_NAME.pattern}")
    if task is not None and task not in TASKS:
        raise ExportError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    classifier = is_classifier(estimator)
    if not classifier and not is_regressor(estimator):
        raise ExportError(f"{type(estimator).__name__} is neither a classifier nor a regressor")
    model_dir = Path(store) / name
    version = _pick_version(model_dir, version)

    if isinstance(sample, pd.DataFrame) and _has_column_transformer(estimator):
        features = [str(c) for c in sample.columns]
        if feature_names is not None and list(feature_names) != features:
            raise ExportError(
                "with a ColumnTransformer the inputs are the DataFrame's columns "
                f"{features}, not {list(feature_names)}"
            )
        initial_types, feed, sk_input = _per_column_inputs(sample)
    else:
        features, initial_types, feed, sk_input = _single_input(estimator, sample, feature_names)

    if labels is not None and not classifier:
        raise ExportError("labels are only for classifiers")
    class_labels = _class_labels(estimator, labels) if classifier else None

    onnx_bytes = _convert(estimator, initial_types, name, description, classifier=classifier)
    _check_parity(
        estimator, onnx_bytes, feed, sk_input, classifier=classifier, rtol=rtol, atol=atol
    )

    metadata: dict[str, Any] = {"task": task or ("classification" if classifier else "regression")}
    metadata["features"] = features
    if class_labels is not None:
        metadata["labels"] = class_labels
    if description is not None:
        metadata["description"] = description
    if metrics is not None:
        metadata["metrics"] = {str(k): float(v) for k, v in metrics.items()}
    metadata["created_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    metadata["framework"] = _framework_versions()
    try:
        # allow_nan=False: NaN or Infinity in metrics would make metadata.json invalid JSON.
        metadata_text = json.dumps(metadata, indent=2, allow_nan=False) + "\n"
    except ValueError as exc:
        raise ExportError(f"metadata is not valid JSON: {exc}") from exc

    return _write_version(model_dir, version, onnx_bytes, metadata_text.encode())


def _pick_version(model_dir: Path, version: int | None) -> int:
    """The version to write: the one asked for if free, else one above the highest present."""
    if version is None:
        existing = [int(p.name) for p in _version_dirs(model_dir)]
        return max(existing, default=0) + 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ExportError(f"version must be a positive integer, not {version!r}")
    if (model_dir / str(version)).exists():
        raise ExportError(f"{model_dir / str(version)} already exists; versions are immutable")
    return version


def _version_dirs(model_dir: Path) -> list[Path]:
    """The integer-named version folders of one model (none if the model is new)."""
    if not model_dir.is_dir():
        return []
    return [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0]


def _has_column_transformer(estimator: Any) -> bool:
    """True if a ColumnTransformer sits anywhere in the (nested) pipeline."""
    if isinstance(estimator, ColumnTransformer):
        return True
    if isinstance(estimator, Pipeline):
        return any(_has_column_transformer(step) for _, step in estimator.steps)
    if isinstance(estimator, FeatureUnion):
        return any(_has_column_transformer(part) for _, part in estimator.transformer_list)
    return False


def _final_estimator(estimator: Any) -> Any:
    """The last step of a (nested) Pipeline, or the estimator itself."""
    while isinstance(estimator, Pipeline):
        estimator = estimator.steps[-1][1]
    return estimator


def _per_column_inputs(sample: pd.DataFrame) -> tuple[InitialTypes, Feed, pd.DataFrame]:
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
            kind = FloatTensorType([None, 1])
            array = values.to_numpy(dtype=np.float32)
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
    estimator: Any, sample: Any, feature_names: Sequence[str] | None
) -> tuple[list[str], InitialTypes, Feed, Any]:
    """One float [None, F] input named "input", with the feature names that describe it."""
    columns = [str(c) for c in sample.columns] if isinstance(sample, pd.DataFrame) else None
    try:
        array = np.asarray(sample, dtype=np.float32)
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
    return features, [("input", FloatTensorType([None, n_features]))], {"input": array}, sk_input


def _class_labels(estimator: Any, labels: Sequence[str] | None) -> list[str]:
    """Class names in the order of the probability columns."""
    classes = [str(c) for c in _final_estimator(estimator).classes_]
    if labels is None:
        return classes
    if len(labels) != len(classes):
        raise ExportError(f"{len(labels)} labels given for {len(classes)} classes {classes}")
    return [str(label) for label in labels]


def _convert(
    estimator: Any,
    initial_types: InitialTypes,
    name: str,
    description: str | None,
    *,
    classifier: bool,
) -> bytes:
    """The serialized ONNX model; classifiers output a plain [N, C] probability tensor."""
    # Without ZipMap the probabilities are a float tensor, not a list of dicts per row.
    options = {id(_final_estimator(estimator)): {"zipmap": False}} if classifier else None
    try:
        model = convert_sklearn(
            estimator,
            name=name,
            initial_types=initial_types,
            target_opset=TARGET_OPSET,
            options=options,
            doc_string=description or "",
        )
    except Exception as exc:
        # skl2onnx raises many unrelated types; the user needs the reason, not the class.
        raise ExportError(f"skl2onnx could not convert {type(estimator).__name__}: {exc}") from exc
    return model.SerializeToString()


def _check_parity(
    estimator: Any,
    onnx_bytes: bytes,
    feed: Feed,
    sk_input: Any,
    *,
    classifier: bool,
    rtol: float,
    atol: float,
) -> None:
    """Raise ExportError naming the first row where onnxruntime and scikit-learn disagree."""
    try:
        session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        outputs = session.run(None, feed)
    except Exception as exc:
        raise ExportError(f"onnxruntime could not run the converted model: {exc}") from exc
    try:
        expected = estimator.predict(sk_input)
        # Classifiers without predict_proba (LinearSVC) are checked on their labels alone.
        has_proba = classifier and hasattr(estimator, "predict_proba")
        expected_proba = estimator.predict_proba(sk_input) if has_proba else None
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"scikit-learn could not predict on the sample: {exc}") from exc

    if classifier:
        got_labels = np.asarray(outputs[0]).ravel()
        for row, (want, got) in enumerate(zip(expected, got_labels, strict=True)):
            # Compared as text: int classes come back as int64, string classes as str.
            if str(want) != str(got):
                raise ExportError(
                    f"row {row}: scikit-learn predicts {str(want)!r}, ONNX {str(got)!r}"
                )
        if expected_proba is not None:
            _compare(expected_proba, outputs[1], "probabilities", rtol, atol)
    else:
        _compare(expected, outputs[0], "prediction", rtol, atol)


def _compare(expected: Any, got: Any, what: str, rtol: float, atol: float) -> None:
    """Compare row by row; the error names the first row and column that differ."""
    want = np.asarray(expected, dtype=np.float64)
    have = np.asarray(got, dtype=np.float64)
    want = want.reshape(want.shape[0], -1)
    have = have.reshape(have.shape[0], -1)
    if want.shape != have.shape:
        raise ExportError(f"{what}: scikit-learn shape {want.shape}, ONNX shape {have.shape}")
    close = np.isclose(have, want, rtol=rtol, atol=atol)
    if not close.all():
        row, col = (int(i) for i in np.argwhere(~close)[0])
        raise ExportError(
            f"row {row}: {what}[{col}] is {float(want[row, col])!r} in scikit-learn, "
            f"{float(have[row, col])!r} in ONNX (rtol={rtol}, atol={atol})"
        )


def _framework_versions() -> dict[str, str]:
    """Versions of what produced the model, for whoever debugs it later."""
    versions: dict[str, str] = {}
    for dist in FRAMEWORK_DISTRIBUTIONS:
        try:
            versions[dist] = dist_version(dist)
        except PackageNotFoundError:
            versions[dist] = "unknown"
    versions["python"] = platform.python_version()
    return versions


def _write_version(model_dir: Path, version: int, onnx_bytes: bytes, metadata: bytes) -> Path:
    """Stage both files in a dot-folder the server ignores, then rename it into place."""
    target = model_dir / str(version)
    created_model_dir = not model_dir.exists()
    staged = model_dir / f".tmp-{version}-{secrets.token_hex(4)}"
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        staged.mkdir()
        _write_synced(staged / "model.onnx", onnx_bytes)
        _write_synced(staged / "metadata.json", metadata)
        _fsync_dir(staged)
        # Checked again: another export may have taken the version since we picked it, and
        # os.rename would silently replace an empty folder.
        if target.exists():
            raise ExportError(f"{target} already exists; versions are immutable")
        os.rename(staged, target)
        _fsync_dir(model_dir)
    except BaseException as exc:
        shutil.rmtree(staged, ignore_errors=True)
        if created_model_dir and model_dir.is_dir() and not any(model_dir.iterdir()):
            model_dir.rmdir()
        if isinstance(exc, OSError):
            raise ExportError(f"could not write {target}: {exc}") from exc
        raise
    return target


def _write_synced(path: Path, data: bytes) -> None:
    """Write and fsync, so the folder never becomes visible with half-written files."""
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make new entries of a folder durable; Windows cannot open folders, so skip it there."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="model-export",
        description="Export a fitted scikit-learn model (joblib) to a new model store version.",
    )
    parser.add_argument("model", type=Path, help="the fitted estimator, saved with joblib.dump")
    parser.add_argument("--name", required=True, help="model name in the store")
    parser.add_argument(
        "--sample", required=True, type=Path, help="CSV of rows to check parity on (with header)"
    )
    parser.add_argument("--store", type=Path, default=Path("models_store"), help="store folder")
    parser.add_argument("--version", type=int, help="version to write (default: next free)")
    parser.add_argument("--labels", help="comma-separated class names, in classes_ order")
    parser.add_argument("--task", choices=TASKS, help="override the detected task")
    parser.add_argument("--description", help="free text stored in metadata.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (`model-export`); prints the written folder, returns 1 on ExportError."""
    args = _parse_args(argv)
    try:
        estimator = _load_estimator(args.model)
        sample = _read_sample(args.sample)
        feature_names: list[str] | None = None
        rows: Any = sample
        if not _has_column_transformer(estimator):
            feature_names = [str(c) for c in sample.columns]
            try:
                rows = sample.to_numpy(dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise ExportError(f"{args.sample}: every column must be numeric: {exc}") from exc
        written = export_model(
            estimator,
            args.store,
            args.name,
            rows,
            version=args.version,
            feature_names=feature_names,
            labels=args.labels.split(",") if args.labels else None,
            task=args.task,
            description=args.description,
        )
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(written)
    return 0


def _load_estimator(path: Path) -> Any:
    """Unpickle the estimator; joblib files run code on load, so only load trusted files."""
    try:
        return joblib.load(path)
    except (OSError, EOFError, ValueError, ImportError, pickle.UnpicklingError) as exc:
        raise ExportError(f"cannot load {path}: {exc}") from exc


def _read_sample(path: Path) -> pd.DataFrame:
    """The sample rows; the header row names the features."""
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from exc


if __name__ == "__main__":
    raise SystemExit(main())
