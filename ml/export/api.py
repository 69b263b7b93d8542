"""`export_model`: a fitted estimator to a new version folder of the model store.

The model is converted, run with onnxruntime on sample rows, compared with the library, and only
then written, atomically, as `<store>/<name>/<version>/`.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

import pandas as pd

from ml.export.boosting import BOOSTING_LIBRARIES
from ml.export.check import (
    Checked,
    Request,
    checked_conversion,
    has_column_transformer,
    inputs_like_sample,
    run_checked,
)
from ml.export.convert import step_paths
from ml.export.errors import ExportError
from ml.export.parity import ParityError
from ml.export.profile import MIN_REFERENCE_ROWS, MIN_SAMPLE_ROWS, build_profile
from ml.export.rollout import RolloutSettings, check_rollout, ship
from ml.export.samples import build_samples, pick_rows
from ml.export.tasks import CLASSIFICATION, REGRESSION, TASKS, detect_task
from ml.export.writer import pick_version, write_version
from ml.store import MODEL_NAME, is_valid_model_name

__all__ = ["TASKS", "ExportError", "RolloutSettings", "export_model", "has_column_transformer"]

log = logging.getLogger(__name__)

FRAMEWORK_DISTRIBUTIONS = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime")
FLOAT32_HINT = (
    "  try: float32 is the cause: the same model converted for float64 input passes; export "
    "with double=True (model-export --double)"
)
OTHER_HINT = (
    "  try: check that the model was fitted on data like the sample; a newer converter "
    "(skl2onnx, onnxmltools) may fix the difference"
)


def export_model(
    estimator: Any,
    store: Path,
    name: str,
    sample: Any,
    *,
    version: int | None = None,
    feature_names: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    task: str | None = None,
    int_columns: Sequence[str] = (),
    description: str | None = None,
    metrics: dict[str, float] | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    double: bool = False,
    rollout: RolloutSettings | None = None,
    reference: Any = None,
) -> Path:
    """Convert `estimator`, check it against its own answers on `sample`, write the next
    version: model.onnx, metadata.json and samples.json.

    `sample` is a 2-D numpy array (one input named "input"), a pandas DataFrame (one input per
    column when the pipeline holds a ColumnTransformer, else one input), or, for a pipeline that
    starts with a text vectorizer, one column of strings. Numbers are fed as float32, or float64
    with `double`; the columns named in `int_columns` as int64. `targets` names the outputs of a
    regressor with several targets. Returns the written version folder; raises ExportError,
    writing nothing, on any failure.

    With `rollout`, the version starts as the candidate of a rollout with those settings, and
    answers no more than its share of traffic from the moment it appears (see ml.export.rollout).
    `reference` (rows like `sample`, typically the training data) is profiled into profile.json
    for drift; without it, `sample` is, from 500 rows.
    """
    if not is_valid_model_name(name):
        raise ExportError(f"model name {name!r} must match {MODEL_NAME.pattern}")
    task, stated_task = detect_task(estimator, task)
    if labels is not None and task != CLASSIFICATION:
        raise ExportError("labels are only for classifiers")
    if targets is not None and task != REGRESSION:
        raise ExportError("targets are only for regressors")
    model_dir = Path(store) / name
    version = pick_version(model_dir, version)
    if rollout is not None:
        check_rollout(Path(store), name, version, rollout)
    request = Request(
        estimator,
        sample,
        name,
        task,
        feature_names,
        targets,
        tuple(str(c) for c in int_columns),
        description,
        rtol,
        atol,
    )
    try:
        checked = checked_conversion(request, double=double)
    except ParityError as exc:
        hint = OTHER_HINT
        if not double and _float64_passes(request):
            hint = FLOAT32_HINT
        raise ParityError(f"{exc}\n{hint}") from exc

    names = _label_names(checked.classes, labels)
    profile = _profile(checked, request, reference, names, double)
    files = _files(checked, request, stated_task, names, metrics, profile)
    if rollout is not None:
        return ship(Path(store), name, version, files, rollout)
    return write_version(model_dir, version, files)


def _files(
    checked: Checked,
    request: Request,
    stated_task: str,
    names: list[str] | None,
    metrics: dict[str, float] | None,
    profile: dict[str, Any] | None,
) -> dict[str, bytes]:
    """model.onnx, metadata.json and, when some rows can be written, samples.json; profile.json
    with a profile."""
    metadata: dict[str, Any] = {"task": stated_task, "features": checked.inputs.features}
    if checked.targets:
        metadata["targets"] = checked.targets
    if names is not None:
        metadata["labels"] = names
    if checked.missing_values:
        metadata["missing_values"] = True
        if checked.inputs.string_columns:
            metadata["missing_string"] = checked.missing_string
    if request.description is not None:
        metadata["description"] = request.description
    if metrics is not None:
        metadata["metrics"] = {str(k): float(v) for k, v in metrics.items()}
    metadata["created_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    metadata["framework"] = _framework_versions(request.estimator)

    inputs = checked.inputs
    usable = inputs.usable[: checked.sample_rows].copy()
    if not checked.missing_values:
        usable &= ~inputs.missing[: checked.sample_rows]
    samples = build_samples(
        inputs.instances,
        checked.answers,
        pick_rows(usable),
        request.task,
        classes=checked.classes,
        labels=names,
        targets=checked.targets,
        rtol=request.rtol,
        atol=request.atol,
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
        if profile is not None:
            files["profile.json"] = (json.dumps(profile, allow_nan=False) + "\n").encode()
    except ValueError as exc:
        raise ExportError(f"metadata.json or samples.json would not be valid JSON: {exc}") from exc
    return files


def _profile(
    checked: Checked, request: Request, reference: Any, labels: list[str] | None, double: bool
) -> dict[str, Any] | None:
    """profile.json's content, from `reference` or else from the sample's rows."""
    inputs = checked.inputs
    # The sample's own rows: the rows with values left out that the parity check adds are not
    # data the model was trained on.
    feed = {name: array[: checked.sample_rows] for name, array in inputs.feed.items()}
    if reference is not None:
        if isinstance(reference, pd.DataFrame) and isinstance(request.sample, pd.DataFrame):
            columns = list(request.sample.columns)
            lacking = [c for c in columns if c not in reference.columns]
            if lacking:
                raise ExportError(f"reference: no column {', '.join(map(repr, lacking))}")
            reference = reference[columns]  # the sample's columns, in its order
        feed = inputs_like_sample(
            request, reference, double=double, missing_string=checked.missing_string
        ).feed
    outputs = run_checked(checked, feed, request.estimator)
    profile = build_profile(
        feed,
        inputs.features,
        outputs,
        per_column=inputs.per_column,
        classes=checked.classes,
        labels=labels,
        min_rows=MIN_SAMPLE_ROWS if reference is None else MIN_REFERENCE_ROWS,
    )
    if profile is None and reference is not None:
        raise ExportError(f"reference: fewer than {MIN_REFERENCE_ROWS} rows, too few to profile")
    if profile is None:
        log.warning("no profile.json: fewer than %d sample rows and no reference", MIN_SAMPLE_ROWS)
    return profile


def _float64_passes(request: Request) -> bool:
    """Whether the model converted for float64 input passes where the float32 one failed."""
    try:
        checked_conversion(request, double=True)
    except ExportError:
        return False
    return True


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
