"""Tiny ONNX models for tests, each written as one model version folder.

Every `write_*` function takes the version folder to write (`store / "iris" / "1"`), creates it
with its parents, writes `model.onnx` (and `metadata.json` where it says so) and returns it.
Models are built with skl2onnx or `onnx.helper` once per process and cached as bytes, so writing
one again costs a file write.

    write_iris_classifier   RandomForest on iris, string labels, input "input" [None, 4] float
    write_regressor         LinearRegression on diabetes, input "input" [None, 10] float
    write_columns_pipeline  ColumnTransformer + LogisticRegression/Ridge, one [None, 1] input per
                            column: "color" string, "size" float, "count" int64
    write_raw_model         x -> {"y": x * 2, "s": sum(x, axis=1, keepdims)}; neither classifier
                            nor regressor; `batch=1` fixes the batch dimension
    write_half_model        "x" float16 [N, 2] -> "half" float16 (the same values) and "single"
                            float (cast); hand-built, no metadata.json
    write_slow_model        "x" float [N, 64] -> "y" float [N, 64]: `layers` matrix products in a
                            row, to keep a run busy for a while; no metadata.json
    write_double_input_model, write_int64_input_model
                            "x" [N, 2] double / int64 -> "y" [N, 1] = row sum; hand-built, so
                            answered by output name unless metadata.json says "regression"
    write_classifier        a scikit-learn classifier (forest, logistic, mlp, knn, naive_bayes)
                            on iris whose classes are any values given: (3, 7, 9), ("no", "yes")
    write_garbage, write_empty
                            a model.onnx that onnxruntime cannot load
    write_graph             a hand-built onnx.GraphProto as a version folder
    write_model_toml        <model folder>/model.toml from text
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 18
ML_OPSET = 3
TARGET_OPSET = {"": OPSET, "ai.onnx.ml": ML_OPSET}

IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
IRIS_LABELS = ("setosa", "versicolor", "virginica")
DIABETES_FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
COLUMNS = ("color", "size", "count")
COLOR_VALUES = ("red", "green", "blue")
COLUMNS_LABELS = ("high", "low")

__all__ = [
    "COLOR_VALUES",
    "COLUMNS",
    "COLUMNS_LABELS",
    "DIABETES_FEATURES",
    "IRIS_FEATURES",
    "IRIS_LABELS",
    "columns_rows",
    "diabetes_rows",
    "fitted_classifier",
    "iris_rows",
    "write_classifier",
    "write_columns_pipeline",
    "write_double_input_model",
    "write_empty",
    "write_garbage",
    "write_graph",
    "write_half_model",
    "write_int64_input_model",
    "write_iris_classifier",
    "write_model_toml",
    "write_raw_model",
    "write_regressor",
    "write_slow_model",
]


# -- sample rows -------------------------------------------------------------------------------


def iris_rows(n: int = 5) -> list[list[float]]:
    """The first `n` rows of iris spread over the three classes, as plain float lists."""
    from sklearn.datasets import load_iris

    data = load_iris().data
    picks = np.linspace(0, len(data) - 1, n).astype(int)
    return [[float(v) for v in data[i]] for i in picks]


def diabetes_rows(n: int = 5) -> list[list[float]]:
    """`n` rows of the diabetes data set (10 floats each)."""
    from sklearn.datasets import load_diabetes

    data = load_diabetes().data
    return [[float(v) for v in row] for row in data[:n]]


def columns_rows(n: int = 5) -> list[dict[str, Any]]:
    """`n` rows for `write_columns_pipeline`, keyed by column: color (str), size, count (int)."""
    return [
        {"color": COLOR_VALUES[i % 3], "size": 2.0 + 0.75 * i, "count": (3 * i) % 10}
        for i in range(n)
    ]


# -- writing -----------------------------------------------------------------------------------


def _write(
    folder: Path, model: bytes, metadata: dict[str, Any] | None, *, model_name: str = "model.onnx"
) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / model_name).write_bytes(model)
    if metadata is not None:
        (folder / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    return folder


def write_graph(
    folder: Path, graph: onnx.GraphProto, metadata: dict[str, Any] | None = None
) -> Path:
    """A hand-built graph (default opset, IR 9) as `folder/model.onnx`, with `metadata`."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    return _write(folder, model.SerializeToString(), metadata)


def write_model_toml(model_dir: Path, text: str) -> Path:
    """Write `model_dir/model.toml` (creating the model folder) and return its path."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / "model.toml"
    path.write_text(text, encoding="utf-8")
    return path


def write_iris_classifier(
    dir: Path, *, zipmap: bool = False, metadata: bool = True, n_estimators: int = 5
) -> Path:
    """A small RandomForestClassifier on iris with string labels (setosa, versicolor, virginica).

    Input "input" float [None, 4]; outputs "label" string [None] and "probabilities" float
    [None, 3], or with `zipmap` "output_label" and "output_probability", a seq(map(string,
    tensor(float))). With `metadata`,
    metadata.json holds task, features (IRIS_FEATURES) and labels (IRIS_LABELS). A different
    `n_estimators` gives a different model file.
    """
    meta = (
        {
            "task": "classification",
            "features": list(IRIS_FEATURES),
            "labels": list(IRIS_LABELS),
            "framework": "scikit-learn",
        }
        if metadata
        else None
    )
    return _write(dir, _iris_bytes(zipmap, n_estimators), meta)


def write_heavy_iris_classifier(dir: Path) -> Path:
    """Iris's input and labels, but a forest of deep trees fitted to noise: its session holds
    megabytes, so a version leaked by a reload shows plainly in the server's memory."""
    meta = {"task": "classification", "features": list(IRIS_FEATURES), "framework": "scikit-learn"}
    return _write(dir, _heavy_iris_bytes(), meta)


def write_classifier(
    dir: Path,
    estimator: str = "forest",
    classes: tuple[Any, ...] = (3, 7, 9),
    *,
    zipmap: bool = False,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """`fitted_classifier(estimator, classes)` as skl2onnx writes it: input "input" float
    [None, 4], outputs "label" and "probabilities" (or a ZipMap with `zipmap`)."""
    return _write(dir, _classifier_bytes(estimator, classes, zipmap), metadata)


@functools.cache
def fitted_classifier(estimator: str, classes: tuple[Any, ...]) -> Any:
    """A small classifier fitted on iris, each iris class renamed classes[i] (two classes: setosa
    against the rest)."""
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier

    make = {
        "forest": lambda: RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0),
        "logistic": lambda: LogisticRegression(max_iter=500),
        "mlp": lambda: MLPClassifier(hidden_layer_sizes=(8,), max_iter=2000, random_state=0),
        "knn": lambda: KNeighborsClassifier(n_neighbors=3),
        "naive_bayes": lambda: GaussianNB(),
    }[estimator]
    data = load_iris()
    target = np.minimum(data.target, len(classes) - 1)
    return make().fit(data.data.astype(np.float32), np.asarray(classes)[target])


@functools.cache
def _classifier_bytes(estimator: str, classes: tuple[Any, ...], zipmap: bool) -> bytes:
    from skl2onnx.common.data_types import FloatTensorType

    model = fitted_classifier(estimator, classes)
    return _convert(model, [("input", FloatTensorType([None, 4]))], {id(model): {"zipmap": zipmap}})


def write_regressor(dir: Path, *, metadata: bool = True) -> Path:
    """LinearRegression on diabetes: input "input" float [None, 10], output "variable" [None, 1].

    With `metadata`, metadata.json holds task "regression" and features (DIABETES_FEATURES).
    """
    meta = {"task": "regression", "features": list(DIABETES_FEATURES)} if metadata else None
    return _write(dir, _regressor_bytes(), meta)


def write_columns_pipeline(
    dir: Path, *, task: str = "classification", metadata: bool = True
) -> Path:
    """ColumnTransformer (OneHotEncoder on "color", StandardScaler on "size", passthrough "count").

    One ONNX input per column, in the order COLUMNS: "color" string [None, 1], "size" float
    [None, 1], "count" int64 [None, 1]. `task="classification"` ends in a LogisticRegression with
    labels COLUMNS_LABELS ("high", "low") and no ZipMap; `task="regression"` ends in a Ridge.
    With `metadata`, metadata.json holds task and features (COLUMNS).
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"task {task!r}")
    meta: dict[str, Any] | None = None
    if metadata:
        meta = {"task": task, "features": list(COLUMNS)}
        if task == "classification":
            meta["labels"] = list(COLUMNS_LABELS)
    return _write(dir, _columns_bytes(task), meta)


def write_raw_model(
    dir: Path,
    *,
    batch: int | None = None,
    features: int | None = 3,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """An `onnx.helper` graph that is neither classifier nor regressor.

    Input "x" float [batch or "N", features or "F"]; outputs "y" = x * 2 (same shape) and
    "s" = ReduceSum(x, axis 1, keepdims) [batch or "N", 1]. `batch=1` gives a FIXED batch
    dimension; `features=None` a dynamic feature dimension (which needs `metadata` features to
    be served). No metadata.json unless `metadata` is given (features then read x0, x1, ...).
    """
    return _write(dir, _raw_bytes(batch, features), metadata)


def write_double_input_model(dir: Path) -> Path:
    """Input "x" double [N, 2] -> output "y" double [N, 1], the row sum; no metadata.json."""
    return _write(dir, _sum_bytes(TensorProto.DOUBLE), None)


def write_int64_input_model(dir: Path) -> Path:
    """Input "x" int64 [N, 2] -> output "y" float [N, 1], the row sum; no metadata.json."""
    return _write(dir, _sum_bytes(TensorProto.INT64), None)


def write_half_model(dir: Path) -> Path:
    """Input "x" float16 [N, 2] -> "half" float16 (Identity) and "single" float (Cast)."""
    return _write(dir, _half_bytes(), None)


def write_slow_model(dir: Path, layers: int = 200) -> Path:
    """Input "x" float [N, 64] -> "y" float [N, 64], through `layers` MatMul + Tanh pairs."""
    return _write(dir, _slow_bytes(layers), None)


def write_garbage(dir: Path) -> Path:
    """A model.onnx holding bytes that are not an ONNX model."""
    return _write(dir, b"this is not an onnx model\x00\x01\x02", None)


def write_empty(dir: Path) -> Path:
    """A model.onnx of zero bytes."""
    return _write(dir, b"", None)


# -- building (cached) -------------------------------------------------------------------------


def _convert(estimator: Any, initial_types: list[Any], options: dict[Any, Any] | None) -> bytes:
    from skl2onnx import convert_sklearn

    onx = convert_sklearn(
        estimator, initial_types=initial_types, target_opset=TARGET_OPSET, options=options
    )
    return onx.SerializeToString()


@functools.cache
def _iris_bytes(zipmap: bool, n_estimators: int) -> bytes:
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    data = load_iris()
    y = data.target_names[data.target]
    model = RandomForestClassifier(n_estimators=n_estimators, max_depth=3, random_state=0)
    model.fit(data.data.astype(np.float32), y)
    return _convert(model, [("input", FloatTensorType([None, 4]))], {id(model): {"zipmap": zipmap}})


@functools.cache
def _heavy_iris_bytes() -> bytes:
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 8.0, (4000, 4)).astype(np.float32)
    y = np.array(IRIS_LABELS)[rng.integers(0, 3, 4000)]
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(x, y)
    return _convert(model, [("input", FloatTensorType([None, 4]))], {id(model): {"zipmap": False}})


@functools.cache
def _regressor_bytes() -> bytes:
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression

    data = load_diabetes()
    model = LinearRegression().fit(data.data, data.target)
    return _convert(model, [("input", FloatTensorType([None, 10]))], None)


@functools.cache
def _columns_bytes(task: str) -> bytes:
    import pandas as pd
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    n = 60
    frame = pd.DataFrame(
        {
            "color": rng.choice(list(COLOR_VALUES), n).astype(object),
            "size": rng.normal(5.0, 2.0, n).astype(np.float32),
            "count": rng.integers(0, 10, n).astype(np.int64),
        }
    )
    score = 2.0 * frame["size"] + frame["count"] + 3.0 * (frame["color"] == "red")
    columns = ColumnTransformer(
        [
            ("color", OneHotEncoder(handle_unknown="ignore"), ["color"]),
            ("size", StandardScaler(), ["size"]),
            ("count", "passthrough", ["count"]),
        ]
    )
    final: Any
    if task == "classification":
        final = LogisticRegression(max_iter=500)
        target = np.where(score > score.median(), COLUMNS_LABELS[0], COLUMNS_LABELS[1])
    else:
        final = Ridge()
        target = score.to_numpy()
    pipeline = Pipeline([("columns", columns), ("model", final)]).fit(frame, target)
    initial_types = [
        ("color", StringTensorType([None, 1])),
        ("size", FloatTensorType([None, 1])),
        ("count", Int64TensorType([None, 1])),
    ]
    options = {id(final): {"zipmap": False}} if task == "classification" else None
    return _convert(pipeline, initial_types, options)


def _model(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="onnx_factories"
    )
    model.ir_version = 9  # onnxruntime 1.19+ reads IR 9; newer onnx writes a higher default
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


@functools.cache
def _raw_bytes(batch: int | None, features: int | None) -> bytes:
    rows: int | str = batch if batch is not None else "N"
    width: int | str = features if features is not None else "F"
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "two"], ["y"]),
            helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=1),
        ],
        "raw",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, width])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, width]),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, [rows, 1]),
        ],
        initializer=[
            helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        ],
    )
    return _model(graph)


@functools.cache
def _half_bytes() -> bytes:
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["x"], ["half"]),
            helper.make_node("Cast", ["x"], ["single"], to=TensorProto.FLOAT),
        ],
        "half",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["N", 2])],
        [
            helper.make_tensor_value_info("half", TensorProto.FLOAT16, ["N", 2]),
            helper.make_tensor_value_info("single", TensorProto.FLOAT, ["N", 2]),
        ],
    )
    return _model(graph)


@functools.cache
def _slow_bytes(layers: int) -> bytes:
    weights = np.random.default_rng(0).normal(0, 0.1, (64, 64)).astype(np.float32)
    nodes = []
    previous = "x"
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [previous, "w"], [f"m{i}"]))
        previous = "y" if i == layers - 1 else f"t{i}"
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [previous]))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64])],
        initializer=[numpy_helper.from_array(weights, "w")],
    )
    return _model(graph)


@functools.cache
def _sum_bytes(elem_type: int) -> bytes:
    nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=1)]
    out_type = elem_type
    if elem_type == TensorProto.INT64:
        nodes.append(helper.make_node("Cast", ["total"], ["y"], to=TensorProto.FLOAT))
        out_type = TensorProto.FLOAT
    else:
        nodes.append(helper.make_node("Identity", ["total"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "row_sum",
        [helper.make_tensor_value_info("x", elem_type, ["N", 2])],
        [helper.make_tensor_value_info("y", out_type, ["N", 1])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )
    return _model(graph)
