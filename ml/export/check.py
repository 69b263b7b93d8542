"""Convert, run with onnxruntime, and compare with the library: one checked conversion.

The library answers the rows as the user wrote them; the graph is fed the same rows as the server
will feed them. For a model that takes missing values (`missing`), copies of the first row with
values missing are checked too, and a missing string is fed as the first of `MISSING_STRINGS`
with which the graph answers as the library does.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import FeatureUnion, Pipeline

from ml.export.convert import convert, final_estimator, graph_classes
from ml.export.errors import ExportError
from ml.export.inputs import Inputs, build_inputs
from ml.export.missing import MISSING_STRINGS, takes_missing, with_missing_rows
from ml.export.parity import (
    Answers,
    check_parity,
    class_key,
    library_answers,
    onnx_answers,
)
from ml.export.tasks import CLASSIFICATION, REGRESSION, target_names
from ml.export.text import portable_locale, text_vectorizer

__all__ = ["Checked", "Request", "checked_conversion", "has_column_transformer"]

# "com.microsoft:Solve(-1) is not a registered function/op": the operator, and its opset.
UNREGISTERED_OP = re.compile(r"([\w.]+:\w+)(?:\(-?\d+\))? is not a registered function/op")


@dataclass(frozen=True, slots=True)
class Request:
    """What to export, as the caller asked for it."""

    estimator: Any
    sample: Any
    name: str
    task: str
    feature_names: Sequence[str] | None
    targets: Sequence[str] | None
    int_columns: Sequence[str]
    description: str | None
    rtol: float
    atol: float


@dataclass(frozen=True, slots=True)
class Checked:
    """A converted model that passed the parity check, with what onnxruntime answered."""

    model: onnx.ModelProto
    inputs: Inputs  # the sample (and any rows with values missing) as checked
    sample_rows: int  # how many of `inputs`' rows are the sample's
    answers: Answers  # onnxruntime's
    classes: list[str | int] | None
    targets: list[str] | None
    missing_values: bool
    missing_string: str


def checked_conversion(request: Request, *, double: bool) -> Checked:
    """The checked conversion; raises ExportError (ParityError when the answers differ)."""
    estimator, sample = request.estimator, request.sample
    vectorizer = text_vectorizer(estimator)

    def inputs_for(rows: Any, missing_string: str) -> Inputs:
        return inputs_like_sample(request, rows, double=double, missing_string=missing_string)

    inputs = inputs_for(sample, MISSING_STRINGS[0])
    sample_rows = len(inputs.instances)
    probed: Any = None
    expected: Answers | None = None
    if vectorizer is None and takes_missing(estimator):
        probed = with_missing_rows(sample, frozenset(request.int_columns))
        try:
            probed_inputs = inputs_for(probed, MISSING_STRINGS[0])
            expected = _library(request, probed_inputs)
            inputs = probed_inputs
        except ExportError:
            probed = None  # the library itself refuses missing values: the version will too
    if probed is None:
        _refuse_missing(inputs, estimator)
        expected = _library(request, inputs)
    assert expected is not None
    targets = None
    if request.task == REGRESSION:
        targets = target_names(expected.numbers.shape[1], request.targets)
        if targets:
            fields = [f"prediction[{t}]" for t in targets]
            expected = dataclasses.replace(expected, number_fields=fields)

    model = convert(
        estimator,
        inputs.initial_types,
        name=request.name,
        description=request.description,
        zipmap=False,
        classifier=request.task == CLASSIFICATION,
    )
    if vectorizer is not None:
        portable_locale(model)
    if targets:
        _declare_width(model, len(targets))
    classes = (
        _check_classes(estimator, graph_classes(model)) if request.task == CLASSIFICATION else None
    )
    session = _session(model, estimator)
    what = "sample rows"
    feeds = [(MISSING_STRINGS[0], inputs)]
    if probed is not None:
        what = f"rows (the {sample_rows} of the sample, then its first row with values missing)"
        if inputs.string_columns:
            feeds += [(marker, inputs_for(probed, marker)) for marker in MISSING_STRINGS[1:]]
    first_failure: ExportError | None = None
    for missing_string, fed in feeds:
        try:
            outputs = _run(session, fed.feed, estimator)
            got = onnx_answers(
                outputs,
                request.task,
                classes=classes,
                targets=targets,
                with_proba=expected.numbers is not None,
            )
            check_parity(expected, got, rtol=request.rtol, atol=request.atol, what=what)
        except ExportError as exc:
            # A marker may be one the graph refuses (an encoder that fails on unknown
            # categories) or answers differently from the library: the next may be the category
            # it learnt.
            first_failure = first_failure or exc
            continue
        missing_values = probed is not None
        return Checked(
            model, fed, sample_rows, got, classes, targets, missing_values, missing_string
        )
    assert first_failure is not None
    raise first_failure


def inputs_like_sample(
    request: Request, rows: Any, *, double: bool, missing_string: str = MISSING_STRINGS[0]
) -> Inputs:
    """`rows` (the sample, or other rows of its layout) as the graph and the library take them."""
    estimator = request.estimator
    vectorizer = text_vectorizer(estimator)
    tabular = isinstance(request.sample, pd.DataFrame) and has_column_transformer(estimator)
    return build_inputs(
        estimator,
        rows,
        request.feature_names,
        per_column=vectorizer is None and tabular,
        text=vectorizer is not None,
        int_columns=request.int_columns,
        double=double,
        missing_string=missing_string,
    )


def run_checked(checked: Checked, feed: dict[str, np.ndarray], estimator: Any) -> list[Any]:
    """onnxruntime's raw outputs of the checked model on `feed`."""
    return _run(_session(checked.model, estimator), feed, estimator)


def _refuse_missing(inputs: Inputs, estimator: Any) -> None:
    """A sample with missing values for a model that does not take them is an error."""
    if inputs.missing.any():
        row = int(np.flatnonzero(inputs.missing)[0])
        raise ExportError(
            f"sample row {row} has a missing value, which "
            f"{type(final_estimator(estimator)).__name__} does not take in the exported model\n"
            "  try: impute it in the pipeline (a SimpleImputer step), or leave such rows out "
            "of the sample"
        )


def _library(request: Request, inputs: Inputs) -> Answers:
    classes = None
    if request.task == CLASSIFICATION:
        classes = [class_key(c) for c in final_estimator(request.estimator).classes_]
    return library_answers(
        request.estimator, inputs.library, request.task, classes=classes, targets=None
    )


def has_column_transformer(estimator: Any) -> bool:
    """True if a ColumnTransformer sits anywhere in the (nested) pipeline."""
    if isinstance(estimator, ColumnTransformer):
        return True
    if isinstance(estimator, Pipeline):
        return any(has_column_transformer(step) for _, step in estimator.steps)
    if isinstance(estimator, FeatureUnion):
        return any(has_column_transformer(part) for _, part in estimator.transformer_list)
    return False


def _declare_width(model: onnx.ModelProto, width: int) -> None:
    """Declare the [N, width] a multi-output regressor answers; some converters declare
    [N, 1], and onnxruntime would warn on every run."""
    dims = model.graph.output[0].type.tensor_type.shape.dim
    if len(dims) == 2:
        dims[1].Clear()
        dims[1].dim_value = width


def _check_classes(estimator: Any, graph: list[str | int] | None) -> list[str | int]:
    """The graph's classes in probability-column order, checked against the estimator's; the
    estimator's where no classifier operator names them (MLP and k-NN pick the label from a
    constant of the classes, which is what the server reads then)."""
    fitted = [class_key(c) for c in final_estimator(estimator).classes_]
    classes = graph if graph is not None else list(final_estimator(estimator).classes_)
    if [class_key(c) for c in classes] != fitted:
        raise ExportError(f"the ONNX graph lists the classes {classes}, the model {fitted}")
    return [c if isinstance(c, str) else int(c) for c in classes]


def _session(model: onnx.ModelProto, estimator: Any) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ExportError(_runtime_failure(estimator, exc)) from exc


def _run(session: ort.InferenceSession, feed: dict[str, np.ndarray], estimator: Any) -> list[Any]:
    try:
        return list(session.run(None, feed))
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ExportError(_runtime_failure(estimator, exc)) from exc


def _runtime_failure(estimator: Any, exc: BaseException) -> str:
    """Which estimator converted into a graph onnxruntime cannot run, why, and what to try."""
    name = type(final_estimator(estimator)).__name__
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    missing_op = UNREGISTERED_OP.search(first)
    if missing_op:
        return (
            f"{name} converts, but onnxruntime cannot run the result: its graph needs the "
            f"operator {missing_op.group(1)}, which onnxruntime does not implement\n"
            f"  try: replace {name} with an estimator whose conversion uses standard operators, "
            "or keep serving it from the library"
        )
    return (
        f"onnxruntime could not run the converted {name}: {first}\n"
        "  try: a newer onnxruntime or converter (skl2onnx, onnxmltools) may run it"
    )
