"""Fitted scikit-learn models of the kinds a team ships beyond classifiers and regressors, each
converted with skl2onnx and written as a version folder, with the fitted estimator and its data
kept to compute the library's own answers.

    cancer_with_gaps()   breast_cancer with a tenth of its values set to NaN (fixed seed)
    write_hgb            HistGradientBoostingClassifier on it (NaN handled by the trees)
    write_imputer        SimpleImputer + LogisticRegression on it
    write_linnerud       Ridge on linnerud's three targets
    write_outliers       IsolationForest on wine (standardised)
    write_clusters       KMeans (3 clusters) on wine (standardised)
    write_reviews        TfidfVectorizer + LogisticRegression on one text column "review"
    write_shop           ColumnTransformer (OneHotEncoder on "color", SimpleImputer on "size")
                         + LogisticRegression on generated rows with missing colors and sizes

Each write_* returns (folder, estimator, rows as float32 or text); fitting and converting happen
once per process.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
from onnx import helper

TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
REVIEWS = [
    "a good film with a great plot",
    "bad acting and an awful plot",
    "great cast, good story",
    "dull, slow and bad",
    "good fun from start to end",
    "awful: the worst film this year",
] * 4
REVIEW_LABELS = [1, 0, 1, 0, 1, 0] * 4


def _write(folder: Path, model: bytes, metadata: dict[str, Any] | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(model)
    if metadata is not None:
        (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


@functools.cache
def cancer_with_gaps() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    x[np.random.default_rng(20).random(x.shape) < 0.1] = np.nan
    return x, data.target, tuple(str(name) for name in data.feature_names)


@functools.cache
def _hgb() -> tuple[Any, bytes]:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import HistGradientBoostingClassifier

    # skl2onnx's own HGB converter, with the attribute types protobuf 7 needs (ml.export.hgb).
    from ml.export.hgb import custom_converters

    x, y, _ = cancer_with_gaps()
    model = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(x, y)
    onx = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
        target_opset=TARGET_OPSET,
        options={"zipmap": False},
        custom_conversion_functions=custom_converters(),
    )
    return model, onx.SerializeToString()


@functools.cache
def _imputer() -> tuple[Any, bytes]:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y, _ = cancer_with_gaps()
    model = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(x, y)
    onx = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
        target_opset=TARGET_OPSET,
        options={"zipmap": False},
    )
    return model, onx.SerializeToString()


def write_hgb(folder: Path, missing_values: bool = True) -> tuple[Path, Any, np.ndarray]:
    model, onx = _hgb()
    x, _, names = cancer_with_gaps()
    metadata = {"features": list(names), "missing_values": missing_values}
    return _write(folder, onx, metadata), model, x


def write_imputer(folder: Path, missing_values: bool = True) -> tuple[Path, Any, np.ndarray]:
    model, onx = _imputer()
    x, _, names = cancer_with_gaps()
    metadata = {"features": list(names), "missing_values": missing_values}
    return _write(folder, onx, metadata), model, x


@functools.cache
def _linnerud() -> tuple[Any, bytes, np.ndarray, tuple[str, ...], tuple[str, ...]]:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_linnerud
    from sklearn.linear_model import Ridge

    data = load_linnerud()
    x = data.data.astype(np.float32)
    model = Ridge().fit(x, data.target)
    onx = to_onnx(model, x[:1], target_opset=TARGET_OPSET)
    features = tuple(map(str, data.feature_names))
    return model, onx.SerializeToString(), x, features, tuple(map(str, data.target_names))


def write_linnerud(folder: Path) -> tuple[Path, Any, np.ndarray, tuple[str, ...]]:
    model, onx, x, features, targets = _linnerud()
    metadata = {"task": "regression", "features": list(features), "targets": list(targets)}
    return _write(folder, onx, metadata), model, x, targets


@functools.cache
def wine_rows() -> np.ndarray:
    """Wine, standardised: on its raw scale (proline near 1000) float32 distances lose digits
    that a float64 export keeps, which is not what these tests are about."""
    from sklearn.datasets import load_wine
    from sklearn.preprocessing import StandardScaler

    return StandardScaler().fit_transform(load_wine().data).astype(np.float32)


@functools.cache
def _detector(kind: str) -> tuple[Any, bytes]:
    from skl2onnx import to_onnx
    from sklearn.cluster import KMeans
    from sklearn.ensemble import IsolationForest

    x = wine_rows()
    model = (
        IsolationForest(n_estimators=50, random_state=0)
        if kind == "outliers"
        else KMeans(n_clusters=3, n_init=3, random_state=0)
    ).fit(x)
    return model, to_onnx(model, x[:1], target_opset=TARGET_OPSET).SerializeToString()


def write_outliers(
    folder: Path, metadata: dict[str, Any] | None = None
) -> tuple[Path, Any, np.ndarray]:
    """IsolationForest as skl2onnx writes it; no metadata.json unless given."""
    model, onx = _detector("outliers")
    return _write(folder, onx, metadata), model, wine_rows()


def write_clusters(
    folder: Path, metadata: dict[str, Any] | None = None
) -> tuple[Path, Any, np.ndarray]:
    """KMeans as skl2onnx writes it; no metadata.json unless given."""
    model, onx = _detector("clusters")
    return _write(folder, onx, metadata), model, wine_rows()


@functools.cache
def _reviews() -> tuple[Any, bytes]:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(REVIEWS, REVIEW_LABELS)
    onx = convert_sklearn(
        model,
        initial_types=[("review", StringTensorType([None, 1]))],
        target_opset=TARGET_OPSET,
        options={"zipmap": False},
    )
    # skl2onnx leaves the lower-casing step's locale unset, which onnxruntime reads as
    # en_US.UTF-8, a locale a slim machine lacks; "C" lower-cases these ASCII texts alike.
    for node in onx.graph.node:
        if node.op_type == "StringNormalizer":
            node.attribute.append(helper.make_attribute("locale", "C"))
    return model, onx.SerializeToString()


def write_reviews(folder: Path) -> tuple[Path, Any, list[str]]:
    model, onx = _reviews()
    return _write(folder, onx, None), model, REVIEWS


SHOP_COLUMNS = ("color", "size")


@functools.cache
def shop_rows() -> tuple[list[list[Any]], list[int]]:
    """Generated rows [color, size] where a tenth of the colors are missing ("", as the training
    data writes them) and a tenth of the sizes are NaN; the class follows color and size."""
    rng = np.random.default_rng(7)
    colors = rng.choice(["red", "green", "blue"], 300).astype(object)
    colors[rng.random(300) < 0.1] = ""
    sizes = rng.normal(size=300)
    target = ((colors == "red") ^ (sizes > 0)).astype(int).tolist()
    sizes[rng.random(300) < 0.1] = np.nan
    return [[c, float(s)] for c, s in zip(colors, sizes, strict=True)], target


@functools.cache
def _shop() -> tuple[Any, bytes]:
    import pandas as pd
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rows, target = shop_rows()
    frame = pd.DataFrame(rows, columns=list(SHOP_COLUMNS))
    model = make_pipeline(
        ColumnTransformer(
            [
                ("color", OneHotEncoder(handle_unknown="ignore"), ["color"]),
                ("size", SimpleImputer(), ["size"]),
            ]
        ),
        LogisticRegression(),
    ).fit(frame, target)
    onx = convert_sklearn(
        model,
        initial_types=[
            ("color", StringTensorType([None, 1])),
            ("size", FloatTensorType([None, 1])),
        ],
        target_opset=TARGET_OPSET,
        options={"zipmap": False},
    )
    return model, onx.SerializeToString()


def write_shop(folder: Path) -> tuple[Path, Any]:
    """The shop pipeline, taking missing values (a missing color is fed as "")."""
    model, onx = _shop()
    return _write(folder, onx, {"missing_values": True}), model
