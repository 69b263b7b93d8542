"""The export tool's support matrix, end to end: each family is exported, dropped into a store,
served by a real server process, checked by the server against its samples.json, and answers
/predict/batch as the library's own predict / predict_proba does.

The table it builds is the one in the README ("Shipping a new model version"); the test fails,
printing the new table, when the two differ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import lightgbm
import numpy as np
import pandas as pd
import xgboost
from live_server import REPO, start_server
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.ensemble import (
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ml.export import export_model

MATRIX_START = "<!-- support-matrix:start -->"
MATRIX_END = "<!-- support-matrix:end -->"
ROWS = 40


def float32_exact(x: np.ndarray) -> np.ndarray:
    """Values a float32 input holds exactly, so the library and ONNX see the same numbers."""
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def spread(n: int) -> np.ndarray:
    return np.linspace(0, n - 1, ROWS).round().astype(int)


@dataclass
class Case:
    name: str
    family: str
    extra: str
    model: Any
    sample: Any  # the rows exported with, and sent to the server
    labels: list[str] | None = None
    atol: float = 1e-5
    double: bool = False

    @property
    def input(self) -> str:
        if isinstance(self.sample, pd.DataFrame):
            return "one per column"
        return "float64" if self.double else "float32"

    @property
    def task(self) -> str:
        return "classifier" if hasattr(self.model, "classes_") else "regressor"

    def classes_kind(self) -> str:
        if self.task == "regressor":
            return "-"
        classes = [c if isinstance(c, str) else int(c) for c in self.model.classes_]
        kind = "strings" if isinstance(classes[0], str) else "integers"
        text = f"{kind} {', '.join(map(str, classes))}"
        return text + (f"; labels {', '.join(self.labels)}" if self.labels else "")


def iris_xy() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_iris(return_X_y=True)
    return float32_exact(x), y


def diabetes_xy() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_diabetes(return_X_y=True, scaled=False)
    return float32_exact(x), y


def wine_xy() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_wine(return_X_y=True)
    return float32_exact(x), y


def houses() -> tuple[pd.DataFrame, np.ndarray]:
    """A table with a string, an integer and a float column."""
    rng = np.random.default_rng(7)
    n = 160
    frame = pd.DataFrame(
        {
            "city": rng.choice(["oslo", "lima", "pune"], n).astype(object),
            "rooms": rng.integers(1, 6, n).astype(np.int64),
            "area": float32_exact(rng.normal(70, 20, n)),
        }
    )
    price = 1000 * frame["rooms"] + 30 * frame["area"] + (frame["city"] == "oslo") * 900
    return frame, price.to_numpy()


def one_hot_then(final: Any) -> Pipeline:
    columns = ColumnTransformer(
        [("city", OneHotEncoder(handle_unknown="ignore"), ["city"])], remainder="passthrough"
    )
    return Pipeline([("columns", columns), ("model", final)])


def categorical_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 200
    category = rng.integers(0, 6, n).astype(np.float64)
    number = float32_exact(rng.normal(size=n))
    x = np.c_[category, number]
    classes = (np.isin(category, [1, 3, 4]) ^ (number > 0.3)).astype(int)
    target = np.where(np.isin(category, [0, 2, 5]), 3.0, -1.0) + 2 * number
    return x, classes, target


def build_cases() -> list[Case]:
    x, y = iris_xy()
    species = np.array(["setosa", "versicolor", "virginica"])[y]
    d, target = diabetes_xy()
    d_raw = load_diabetes(return_X_y=True)[0]  # float64 values that float32 cannot hold
    w, wine_class = wine_xy()
    b, cancer = load_breast_cancer(return_X_y=True)
    b = float32_exact(b)
    table, price = houses()
    cats, cat_classes, cat_target = categorical_table()
    size_class = np.where(price > np.median(price), "large", "small")
    rows = spread(len(x))
    d_rows = spread(len(d))

    def fit(model: Any, features: Any, labels: Any) -> Any:
        return model.fit(features, labels)

    scaled_mlp = Pipeline(
        [("scale", StandardScaler()), ("mlp", MLPClassifier((8,), max_iter=2000, random_state=0))]
    )
    cases = [
        Case(
            "logreg",
            "scikit-learn",
            "export",
            fit(LogisticRegression(max_iter=500), x, species),
            x[rows],
        ),
        Case(
            "forest",
            "scikit-learn",
            "export",
            fit(RandomForestClassifier(10, max_depth=4, random_state=0), w, wine_class),
            w,
            labels=["barolo", "grignolino", "barbera"],
        ),
        Case(
            "knn",
            "scikit-learn",
            "export",
            fit(KNeighborsClassifier(5), b, cancer),
            b[spread(len(b))],
        ),
        Case("mlp", "scikit-learn", "export", fit(scaled_mlp, x, species), x[rows]),
        Case("ridge", "scikit-learn", "export", fit(Ridge(), d, target), d[d_rows], atol=1e-3),
        Case(
            "extra-trees",
            "scikit-learn",
            "export",
            fit(ExtraTreesRegressor(10, max_depth=5, random_state=0), d, target),
            d[d_rows],
            atol=1e-3,
        ),
        Case(
            "hgb",
            "HistGradientBoosting",
            "export",
            fit(HistGradientBoostingClassifier(max_iter=10, random_state=0), x, y),
            x[rows],
        ),
        Case(
            "hgb-reg",
            "HistGradientBoosting",
            "export",
            fit(HistGradientBoostingRegressor(max_iter=10, random_state=0), d, target),
            d[d_rows],
            atol=1e-3,
        ),
        Case(
            "hgb-f64",
            "HistGradientBoosting",
            "export",
            fit(HistGradientBoostingRegressor(max_iter=10, random_state=0), d_raw, target),
            d_raw[d_rows],
            atol=1e-3,
            double=True,
        ),
        Case(
            "hgb-cat",
            "HistGradientBoosting, categorical",
            "export",
            fit(
                HistGradientBoostingClassifier(max_iter=10, categorical_features=[0]),
                cats,
                cat_classes,
            ),
            cats[spread(len(cats))],
        ),
        Case(
            "hgb-cat-reg",
            "HistGradientBoosting, categorical",
            "export",
            fit(
                HistGradientBoostingRegressor(max_iter=10, categorical_features=[0]),
                cats,
                cat_target,
            ),
            cats[spread(len(cats))],
            atol=1e-4,
        ),
        Case(
            "xgb",
            "XGBoost",
            "boosting",
            fit(xgboost.XGBClassifier(n_estimators=8, max_depth=3), x, y),
            x[rows],
            labels=["setosa", "versicolor", "virginica"],
        ),
        Case(
            "xgb-reg",
            "XGBoost",
            "boosting",
            fit(xgboost.XGBRegressor(n_estimators=8, max_depth=3), d, target),
            d[d_rows],
            atol=1e-3,
        ),
        Case(
            "xgb-onehot",
            "XGBoost after one-hot columns",
            "boosting",
            fit(one_hot_then(xgboost.XGBRegressor(n_estimators=8, max_depth=3)), table, price),
            table.iloc[spread(len(table))],
            atol=1e-2,
        ),
        Case(
            "lgbm",
            "LightGBM",
            "boosting",
            fit(
                lightgbm.LGBMClassifier(n_estimators=8, num_leaves=7, verbose=-1),
                x,
                np.array([3, 7, 9])[y],
            ),
            x[rows],
        ),
        Case(
            "lgbm-reg",
            "LightGBM",
            "boosting",
            fit(lightgbm.LGBMRegressor(n_estimators=8, num_leaves=7, verbose=-1), d, target),
            d[d_rows],
            atol=1e-3,
        ),
        Case(
            "lgbm-onehot",
            "LightGBM after one-hot columns",
            "boosting",
            fit(
                one_hot_then(lightgbm.LGBMClassifier(n_estimators=8, num_leaves=7, verbose=-1)),
                table,
                size_class,
            ),
            table.iloc[spread(len(table))],
        ),
    ]
    return cases


def instances(sample: Any) -> list[Any]:
    if isinstance(sample, pd.DataFrame):
        return [
            {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            for row in sample.to_dict(orient="records")
        ]
    return np.asarray(sample).tolist()


def expected_answer(case: Case) -> tuple[list[Any], np.ndarray | None, list[str] | None]:
    """What the library itself answers, in the server's vocabulary (CONTRACT.md section 5)."""
    predicted = np.asarray(case.model.predict(case.sample))
    if case.task == "regressor":
        return predicted.astype(float).tolist(), None, None
    classes = list(case.model.classes_)
    names: list[Any] = case.labels or [c if isinstance(c, str) else int(c) for c in classes]
    by_class = {str(c): n for c, n in zip(classes, names, strict=True)}
    keys = [str(n) for n in names]
    return [by_class[str(p)] for p in predicted], case.model.predict_proba(case.sample), keys


def check(case: Case, server_url: str) -> int:
    """samples_checked for the case's version, after checking its answers against the library."""
    detail = httpx.get(f"{server_url}/models/{case.name}", timeout=10).json()
    (entry,) = [v for v in detail["versions"] if v["version"] == 1]
    assert entry["state"] == "AVAILABLE", (case.name, entry)
    checked = entry.get("samples_checked")
    assert isinstance(checked, int) and checked > 0, (case.name, entry)

    response = httpx.post(
        f"{server_url}/predict/batch",
        json={"model": case.name, "instances": instances(case.sample)},
        timeout=30,
    )
    assert response.status_code == 200, (case.name, response.text)
    answer = response.json()
    predictions, probabilities, keys = expected_answer(case)
    if probabilities is None:
        got = np.array(answer["predictions"], dtype=np.float64)
        np.testing.assert_allclose(got, predictions, rtol=1e-4, atol=case.atol, err_msg=case.name)
        return checked
    assert answer["predictions"] == predictions, case.name
    assert all(list(row) == keys for row in answer["probabilities"]), case.name
    got = np.array([list(row.values()) for row in answer["probabilities"]])
    np.testing.assert_allclose(got, probabilities, rtol=1e-4, atol=case.atol, err_msg=case.name)
    return checked


def matrix(cases: list[Case], results: list[int]) -> str:
    lines = [
        "| family | estimator | task | classes | input | extra | samples checked | equal within |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case, checked in zip(cases, results, strict=True):
        estimator = " → ".join(
            type(step).__name__
            for step in (
                case.model.named_steps.values()
                if isinstance(case.model, Pipeline)
                else [case.model]
            )
        )
        lines.append(
            f"| {case.family} | {estimator} | {case.task} | {case.classes_kind()} | {case.input} | "
            f"`{case.extra}` | {checked} | rtol 1e-4, atol {case.atol:g} |"
        )
    return "\n".join(lines)


def readme_matrix() -> str:
    text = (REPO / "README.md").read_text()
    found = re.search(re.escape(MATRIX_START) + r"\n(.*?)\n" + re.escape(MATRIX_END), text, re.S)
    return found.group(1) if found else ""


def test_support_matrix(tmp_path: Path) -> None:
    cases = build_cases()
    store = tmp_path / "store"
    for case in cases:
        export_model(
            case.model,
            store,
            case.name,
            case.sample,
            labels=case.labels,
            atol=case.atol,
            double=case.double,
        )
    with start_server(store, tmp_path) as server:
        results = [check(case, server.url) for case in cases]
    table = matrix(cases, results)
    assert table == readme_matrix(), (
        f"the README's support matrix is out of date; it is now:\n{table}"
    )
