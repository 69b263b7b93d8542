"""The conversion step of the export tool: estimator -> ONNX graph, with errors a person can read.

A failed conversion is reported in a few lines: which estimator (and where it sits in the
pipeline) failed, the innermost cause instead of the converter's dump of tree attributes, and
what to try.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from typing import Any

import onnx
from skl2onnx import convert_sklearn
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import FeatureUnion, Pipeline

from ml.export import hgb as export_hgb
from ml.export.boosting import BOOSTING_LIBRARIES, register_converters
from ml.export.errors import ExportError
from ml.export.inputs import InitialTypes
from ml.export.missing import imputer_converters

__all__ = ["convert", "final_estimator", "graph_classes", "step_paths"]

# Opset 18 (ai.onnx.ml 3) loads on every onnxruntime the server allows (>= 1.19), not only on the
# newest one installed where the model was exported.
TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
CAUSE_CHARS = 300

HINTS = (
    (
        "Expected an int, got a boolean",
        "protobuf 7 refuses the booleans this skl2onnx writes into a tree; upgrade skl2onnx, or "
        "install protobuf<7 where you export",
    ),
    (
        "Unable to find a shape calculator",
        "skl2onnx has no converter for this estimator: replace the step with a supported one, or "
        "register a converter with skl2onnx.update_registered_converter",
    ),
    (
        "Unable to find converter",
        "skl2onnx has no converter for this estimator: replace the step with a supported one, or "
        "register a converter with skl2onnx.update_registered_converter",
    ),
)
DEFAULT_HINT = (
    "check that every step is fitted and among the models skl2onnx supports; a newer skl2onnx "
    "(or onnxmltools for XGBoost and LightGBM) may convert it"
)


def final_estimator(estimator: Any) -> Any:
    """The last step of a (nested) Pipeline, or the estimator itself."""
    while isinstance(estimator, Pipeline):
        estimator = estimator.steps[-1][1]
    return estimator


def step_paths(estimator: Any, path: str = "") -> Iterator[tuple[Any, str]]:
    """Every estimator inside `estimator` (itself included), with where it sits, e.g.
    `step 'columns' > transformer 'color'`."""
    yield estimator, path
    parts: list[tuple[str, str, Any]] = []
    if isinstance(estimator, Pipeline):
        parts = [("step", name, step) for name, step in estimator.steps]
    elif isinstance(estimator, ColumnTransformer):
        fitted = getattr(estimator, "transformers_", estimator.transformers)
        parts = [("transformer", name, step) for name, step, _ in fitted]
    elif isinstance(estimator, FeatureUnion):
        parts = [("part", name, step) for name, step in estimator.transformer_list]
    for kind, name, step in parts:
        if not isinstance(step, str):  # "drop" and "passthrough"
            where = f"{kind} {name!r}"
            yield from step_paths(step, f"{path} > {where}" if path else where)


def convert(
    estimator: Any,
    initial_types: InitialTypes,
    *,
    name: str,
    description: str | None,
    zipmap: bool,
    classifier: bool,
) -> onnx.ModelProto:
    """The ONNX model; a classifier outputs labels and a plain [N, C] probability tensor unless
    `zipmap` is set. A SimpleImputer on strings converts (its marker, see `missing`)."""
    steps = [step for step, _ in step_paths(estimator)]
    register_converters(steps)
    options = {id(final_estimator(estimator)): {"zipmap": zipmap}} if classifier else None
    try:
        return convert_sklearn(
            estimator,
            name=name,
            initial_types=initial_types,
            target_opset=TARGET_OPSET,
            options=options,
            doc_string=description or "",
            custom_conversion_functions={
                **export_hgb.custom_converters(),
                **imputer_converters(),
            },
        )
    except Exception as exc:  # converters raise many unrelated types
        raise ExportError(conversion_failure(estimator, exc)) from exc


def conversion_failure(estimator: Any, exc: BaseException) -> str:
    """Which estimator failed and where, the innermost cause, and what to try."""
    cause = innermost(exc)
    text = " ".join(str(cause).split()) or type(cause).__name__
    if len(text) > CAUSE_CHARS:
        text = text[:CAUSE_CHARS] + " ..."
    failed = _failed_step(estimator, exc)
    if failed is None:
        what = f"could not convert {type(estimator).__name__}"
    else:
        step, path = failed
        where = f" ({path})" if path else ""
        what = f"could not convert {type(step).__name__}{where}"
        if type(step).__module__.partition(".")[0] in BOOSTING_LIBRARIES:
            what += " with onnxmltools"
    hint = next((h for pattern, h in HINTS if pattern in str(cause)), DEFAULT_HINT)
    return f"{what}\n  cause: {type(cause).__name__}: {text}\n  try: {hint}"


def innermost(exc: BaseException) -> BaseException:
    """The exception at the bottom of the chain of causes."""
    seen = {id(exc)}
    while True:
        nxt = exc.__cause__ or exc.__context__
        if nxt is None or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt


def _failed_step(estimator: Any, exc: BaseException) -> tuple[Any, str] | None:
    """The innermost step of `estimator` that the failing converter or parser was working on,
    found by identity among the local variables of the traceback's frames."""
    paths = {id(step): (step, path) for step, path in step_paths(estimator)}
    found: tuple[Any, str] | None = None
    chain: BaseException | None = exc
    while chain is not None:
        for frame, _ in traceback.walk_tb(chain.__traceback__):
            found = _step_in_frame(frame.f_locals, paths) or found
        chain = chain.__cause__ or chain.__context__
        if chain is exc:
            break
    return found


def _step_in_frame(
    local_vars: dict[str, Any], paths: dict[int, tuple[Any, str]]
) -> tuple[Any, str] | None:
    for key in ("operator", "model", "op"):
        value = local_vars.get(key)
        candidate = getattr(value, "raw_operator", value)
        if id(candidate) in paths:
            return paths[id(candidate)]
    return None


def graph_classes(model: onnx.ModelProto) -> list[str | int] | None:
    """The class labels of the graph's last `ai.onnx.ml` classifier operator or ZipMap, in the
    order of its probability columns; None when the graph names no classes."""
    classes: list[str | int] | None = None
    for node in model.graph.node:
        if node.domain != "ai.onnx.ml":
            continue
        for attribute in node.attribute:
            if attribute.name == "classlabels_strings":
                classes = [s.decode() for s in attribute.strings]
            elif attribute.name in ("classlabels_int64s", "classlabels_ints"):
                classes = [int(i) for i in attribute.ints]
    return classes
