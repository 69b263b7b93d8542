"""What a model takes and gives, derived once from its ONNX graph and `metadata.json`.

Two input layouts are served: one 2-D tensor `[N, F]` ("tensor", numeric, or a single string
column `[N, 1]` such as a text vectorizer takes), and one `[N, 1]` input per feature ("columns",
as skl2onnx writes for a ColumnTransformer). Outputs are recognised as a skl2onnx classifier
(label + probabilities, as a tensor or a ZipMap), a regressor (by `metadata.json`'s task, or a
one-output float graph written by skl2onnx), a regressor of several named targets, an anomaly
detector (label + one score column) or a clustering model (label + one distance column per
cluster), by task or by skl2onnx's output names; anything else ("raw") is returned by output name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Literal, Protocol

import numpy as np


class SignatureError(Exception):
    """The model's inputs or outputs are not a shape this server can serve."""


class NodeArgLike(Protocol):
    """The part of onnxruntime's NodeArg that we read."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def shape(self) -> Sequence[Any]: ...


class InputLayout(StrEnum):
    TENSOR = "tensor"
    COLUMNS = "columns"


class OutputKind(StrEnum):
    CLASSIFIER = "classifier"
    CLASSIFIER_ZIPMAP = "classifier_zipmap"
    REGRESSOR = "regressor"
    MULTI_REGRESSOR = "multi_regressor"
    ANOMALY = "anomaly_detector"
    CLUSTERING = "clustering_model"
    RAW = "raw"


TASKS = ("classification", "regression", "anomaly_detection", "clustering")


JsonType = Literal["number", "integer", "string", "boolean"]


@dataclass(frozen=True, slots=True)
class Datatype:
    """One tensor element type, as ONNX, numpy, the Open Inference Protocol and JSON name it;
    `feature`: whether a feature of a row (a model input) may have it."""

    onnx: str
    dtype: np.dtype[Any]
    v2: str
    json_type: JsonType
    feature: bool


DATATYPES: tuple[Datatype, ...] = tuple(
    Datatype(onnx, np.dtype(dtype), v2, json_type, feature)
    for onnx, dtype, v2, json_type, feature in (
        ("tensor(bool)", np.bool_, "BOOL", "boolean", True),
        ("tensor(uint8)", np.uint8, "UINT8", "integer", False),
        ("tensor(uint16)", np.uint16, "UINT16", "integer", False),
        ("tensor(uint32)", np.uint32, "UINT32", "integer", False),
        ("tensor(uint64)", np.uint64, "UINT64", "integer", False),
        ("tensor(int8)", np.int8, "INT8", "integer", False),
        ("tensor(int16)", np.int16, "INT16", "integer", False),
        ("tensor(int32)", np.int32, "INT32", "integer", True),
        ("tensor(int64)", np.int64, "INT64", "integer", True),
        ("tensor(float16)", np.float16, "FP16", "number", True),
        ("tensor(float)", np.float32, "FP32", "number", True),
        ("tensor(double)", np.float64, "FP64", "number", True),
        ("tensor(string)", np.object_, "BYTES", "string", True),
    )
)
BY_ONNX = {d.onnx: d for d in DATATYPES}
BY_V2 = {d.v2: d for d in DATATYPES}
BY_DTYPE = {d.dtype: d for d in DATATYPES}
_FEATURE_TYPES = {d.onnx: d for d in DATATYPES if d.feature}


@dataclass(frozen=True, slots=True)
class Feature:
    """One feature of a row: its name, the dtype fed to onnxruntime and its JSON type."""

    name: str
    dtype: np.dtype[Any]
    json_type: JsonType


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """An input or output as the graph declares it; `None` marks a dynamic dimension."""

    name: str
    onnx_type: str
    shape: tuple[int | None, ...]


@dataclass(frozen=True, slots=True)
class Signature:
    """Everything the request path needs to know about one model version."""

    layout: InputLayout
    features: tuple[Feature, ...]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    output_kind: OutputKind
    task: str | None
    # A graph whose batch dimension is a fixed number takes exactly that many rows a run.
    fixed_batch_size: int | None
    # A regressor's target names in output column order, when it has several.
    targets: tuple[str, ...] | None = None
    # Whether rows may hold missing values (null, NaN), and what a missing string is fed as.
    missing_values: bool = False
    missing_string: str = ""
    # Derived from `features` once: read on the request path and by the prediction log.
    feature_names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "feature_names", tuple(f.name for f in self.features))
        compared = (getattr(self, f.name) for f in fields(self) if f.compare)
        object.__setattr__(self, "_hash", hash(tuple(compared)))

    def __hash__(self) -> int:
        # Computed once: per-version caches keyed by the signature are read on every request,
        # and the generated hash walks every feature and tensor each time.
        return self._hash


def _dims(shape: Sequence[Any]) -> tuple[int | None, ...]:
    # onnxruntime reports symbolic dimensions as strings and unknown ones as None.
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)


def _info(arg: NodeArgLike) -> TensorInfo:
    shape = arg.shape if isinstance(arg.shape, list | tuple) else ()
    return TensorInfo(arg.name, arg.type, _dims(shape))


def _element(info: TensorInfo) -> tuple[np.dtype[Any], JsonType]:
    datatype = _FEATURE_TYPES.get(info.onnx_type)
    if datatype is None:
        raise SignatureError(
            f"input {info.name!r} has type {info.onnx_type}; served types are "
            + ", ".join(_FEATURE_TYPES)
        )
    return datatype.dtype, datatype.json_type


def _batch_size(inputs: Sequence[TensorInfo]) -> int | None:
    sizes = {info.shape[0] for info in inputs}
    if len(sizes) != 1:
        raise SignatureError("the inputs disagree on their batch dimension")
    return sizes.pop()


def _tensor_features(info: TensorInfo, metadata: Mapping[str, Any]) -> tuple[Feature, ...]:
    dtype, json_type = _element(info)
    names = metadata.get("features")
    width = info.shape[1]
    if json_type == "string":
        if width not in (1, None) or (names is not None and len(names) != 1):
            raise SignatureError(
                f"input {info.name!r} has shape {list(info.shape)}: a single string input must "
                "be one column [N, 1] (a text); several string columns are one [N, 1] input each"
            )
        # One text column (a vectorizer's input): its feature is called as the graph's input.
        return (Feature(str(names[0]) if names else info.name, dtype, json_type),)
    if names is not None:
        if width is not None and len(names) != width:
            raise SignatureError(
                f"metadata.json lists {len(names)} features but the model's input "
                f"{info.name!r} takes {width}"
            )
    elif width is None:
        raise SignatureError(
            f"input {info.name!r} has a dynamic feature dimension: list the features in "
            "metadata.json so requests can be checked"
        )
    else:
        names = [f"x{i}" for i in range(width)]
    return tuple(Feature(str(name), dtype, json_type) for name in names)


def _column_features(
    inputs: Sequence[TensorInfo], metadata: Mapping[str, Any]
) -> tuple[Feature, ...]:
    names = metadata.get("features")
    if names is not None and list(names) != [info.name for info in inputs]:
        raise SignatureError(
            "metadata.json features must name the model's inputs in order: "
            + ", ".join(info.name for info in inputs)
        )
    features = []
    for info in inputs:
        if len(info.shape) != 2 or info.shape[1] not in (1, None):
            raise SignatureError(
                f"input {info.name!r} has shape {list(info.shape)}: a model with several inputs "
                "must take one [N, 1] column per feature"
            )
        dtype, json_type = _element(info)
        features.append(Feature(info.name, dtype, json_type))
    return tuple(features)


def _is_label(info: TensorInfo) -> bool:
    return info.onnx_type in ("tensor(int64)", "tensor(string)") and (
        len(info.shape) == 1 or (len(info.shape) == 2 and info.shape[1] == 1)
    )


# onnxruntime's producer name for models written by skl2onnx, whose one-output float graphs are
# regressors; another producer's single [N, 1] output may mean anything, so it answers `outputs`.
REGRESSOR_PRODUCERS = frozenset({"skl2onnx"})


# skl2onnx's output names for anomaly detectors and clustering models; its classifiers answer
# output_label and output_probability instead.
DETECTOR_OUTPUTS = ("label", "scores")


def _scored(outputs: Sequence[TensorInfo]) -> int | None:
    """The width of the scores of a graph shaped as an int64 label and one 2-D float score
    output (0 when the width is dynamic, 1 for [N] scores), or None for any other graph."""
    if len(outputs) != 2 or not _is_label(outputs[0]) or outputs[0].onnx_type != "tensor(int64)":
        return None
    scores = outputs[1]
    if scores.onnx_type not in ("tensor(float)", "tensor(double)") or len(scores.shape) > 2:
        return None
    return 1 if len(scores.shape) == 1 else scores.shape[1] or 0


def _detector_kind(
    outputs: Sequence[TensorInfo], task: str | None, producer: str
) -> OutputKind | None:
    """An anomaly detector or clustering model, by task or as skl2onnx writes them."""
    width = _scored(outputs)
    names = tuple(info.name for info in outputs)
    if task is None and producer in REGRESSOR_PRODUCERS and names == DETECTOR_OUTPUTS:
        if width == 1:
            return OutputKind.ANOMALY
        if width:
            return OutputKind.CLUSTERING
    if task == "anomaly_detection":
        if width != 1:
            raise SignatureError(
                "task anomaly_detection needs two outputs: an int64 label (-1 outlier, 1 inlier) "
                f"and one score per row; the model gives {_described(outputs)}"
            )
        return OutputKind.ANOMALY
    if task == "clustering":
        if width is None:
            raise SignatureError(
                "task clustering needs two outputs: an int64 cluster and a [N, clusters] float "
                f"distance matrix; the model gives {_described(outputs)}"
            )
        return OutputKind.CLUSTERING
    return None


def _described(outputs: Sequence[TensorInfo]) -> str:
    return ", ".join(
        f"{o.name} {o.onnx_type} {[-1 if d is None else d for d in o.shape]}" for o in outputs
    )


def _multi_target_kind(
    outputs: Sequence[TensorInfo], task: str | None, targets: Sequence[str]
) -> OutputKind:
    if task not in (None, "regression"):
        raise SignatureError(
            f"metadata.json lists targets, which only a regression has, not a {task}"
        )
    output = outputs[0] if len(outputs) == 1 else None
    if (
        output is None
        or output.onnx_type not in ("tensor(float)", "tensor(double)")
        or len(output.shape) != 2
    ):
        raise SignatureError(
            f"metadata.json lists {len(targets)} targets but the model's outputs are not one "
            f"[N, {len(targets)}] float tensor: {_described(outputs)}"
        )
    if output.shape[1] is not None and output.shape[1] != len(targets):
        raise SignatureError(
            f"metadata.json lists {len(targets)} targets but the model's output {output.name!r} "
            f"gives {output.shape[1]} values per row"
        )
    return OutputKind.MULTI_REGRESSOR


def _output_kind(outputs: Sequence[TensorInfo], task: str | None, producer: str) -> OutputKind:
    detector = _detector_kind(outputs, task, producer)
    if detector is not None:
        return detector
    if len(outputs) == 2 and _is_label(outputs[0]) and task in (None, "classification"):
        probabilities = outputs[1]
        if probabilities.onnx_type.startswith("seq(map("):
            return OutputKind.CLASSIFIER_ZIPMAP
        if probabilities.onnx_type in ("tensor(float)", "tensor(double)") and (
            len(probabilities.shape) == 2
        ):
            return OutputKind.CLASSIFIER
    if len(outputs) == 1 and outputs[0].onnx_type in ("tensor(float)", "tensor(double)"):
        shape = outputs[0].shape
        single_target = len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)
        if task == "regression" or (
            task is None and single_target and producer in REGRESSOR_PRODUCERS
        ):
            return OutputKind.REGRESSOR
    return OutputKind.RAW


def derive_signature(
    inputs: Sequence[NodeArgLike],
    outputs: Sequence[NodeArgLike],
    metadata: Mapping[str, Any],
    producer: str = "",
) -> Signature:
    """Build the signature of a model, or say in plain words why it cannot be served.

    `producer` is the graph's producer name (onnxruntime's model metadata): a regressor is
    recognised by `task` in metadata.json, or as a one-output float graph written by skl2onnx.
    """
    input_infos = tuple(_info(arg) for arg in inputs)
    output_infos = tuple(_info(arg) for arg in outputs)
    if not input_infos:
        raise SignatureError("the model has no inputs")
    if any(len(info.shape) != 2 for info in input_infos):
        bad = next(info for info in input_infos if len(info.shape) != 2)
        raise SignatureError(
            f"input {bad.name!r} has shape {list(bad.shape)}; served inputs are 2-D: one [N, F] "
            "tensor or one [N, 1] column per feature"
        )
    if len(input_infos) == 1:
        layout = InputLayout.TENSOR
        features = _tensor_features(input_infos[0], metadata)
    else:
        layout = InputLayout.COLUMNS
        features = _column_features(input_infos, metadata)
    task = metadata.get("task")
    if task is not None and task not in TASKS:
        raise SignatureError(f"metadata.json task {task!r} is not one of {', '.join(TASKS)}")
    targets = metadata.get("targets")
    if targets is not None:
        kind = _multi_target_kind(output_infos, task, targets)
    else:
        kind = _output_kind(output_infos, task, producer)
    return Signature(
        layout=layout,
        features=features,
        inputs=input_infos,
        outputs=output_infos,
        output_kind=kind,
        task=task or _implied_task(kind),
        fixed_batch_size=_batch_size(input_infos),
        targets=None if targets is None else tuple(map(str, targets)),
        missing_values=metadata.get("missing_values") is True,
        missing_string=str(metadata.get("missing_string", "")),
    )


def _implied_task(kind: OutputKind) -> str | None:
    return _TASK_OF_KIND.get(kind)


_TASK_OF_KIND = {
    OutputKind.CLASSIFIER: "classification",
    OutputKind.CLASSIFIER_ZIPMAP: "classification",
    OutputKind.REGRESSOR: "regression",
    OutputKind.MULTI_REGRESSOR: "regression",
    OutputKind.ANOMALY: "anomaly_detection",
    OutputKind.CLUSTERING: "clustering",
}
