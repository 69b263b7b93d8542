"""The export tool's support matrix, end to end: each family is exported, dropped into a store,
served by a real server process, checked by the server against its samples.json, and answers
/predict/batch as the library's own predict / predict_proba / decision_function / transform does,
on rows as the user wrote them (nulls included where the model takes missing values).

The table it builds is the one in the README ("Shipping a new model version"); the test fails,
printing the new table, when the two differ.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import lightgbm
import numpy as np
import onnxruntime as ort
import pandas as pd
import xgboost
from live_server import REPO, start_server
from sklearn.base import is_classifier, is_clusterer, is_outlier_detector
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.compose import ColumnTransformer
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_iris,
    load_linnerud,
    load_wine,
)
from sklearn.ensemble import (
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    IsolationForest,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multioutput import MultiOutputRegressor
from sklearn.neighbors import KNeighborsClassifier, LocalOutlierFactor
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import OneClassSVM
from threadpoolctl import threadpool_limits

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
    targets: list[str] | None = None
    int_columns: tuple[str, ...] = ()
    atol: float = 1e-5
    double: bool = False
    missing: bool = False  # the sample holds missing values, which the version must take
    takes_missing: bool = False  # metadata.json says the version takes missing values
    input: str = ""  # the inputs of the exported graph, in words

    @property
    def task(self) -> str:
        if is_classifier(self.model):
            return "classification"
        if is_outlier_detector(self.model):
            return "anomaly_detection"
        if is_clusterer(self.model):
            return "clustering"
        return "regression"

    def answers(self) -> str:
        if self.task == "classification":
            classes = [c if isinstance(c, str) else int(c) for c in self.model.classes_]
            kind = "strings" if isinstance(classes[0], str) else "integers"
            text = f"{kind} {', '.join(map(str, classes))}"
            return text + (f"; labels {', '.join(self.labels)}" if self.labels else "")
        if self.task == "anomaly_detection":
            return "-1 / 1, outlier, score"
        if self.task == "clustering":
            return f"clusters 0-{self.model.n_clusters - 1}, distances"
        if self.targets:
            return f"targets {', '.join(self.targets)}"
        return "a number"


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
    return cases + missing_value_cases() + answer_cases()


def cancer_with_gaps() -> tuple[np.ndarray, np.ndarray]:
    """Breast cancer data as measured (float64), a tenth of the values missing."""
    x, y = load_breast_cancer(return_X_y=True)
    x = x.copy()
    x[np.random.default_rng(0).random(x.shape) < 0.1] = np.nan
    return x, y


def customers() -> tuple[pd.DataFrame, np.ndarray]:
    """A plan (string), a tenure (float) and a seats (integer) column; plan and tenure missing
    in some rows."""
    rng = np.random.default_rng(4)
    n = 200
    plan = rng.choice(["basic", "plus", "pro"], n).astype(object)
    tenure = rng.uniform(0, 60, n)
    seats = rng.integers(1, 20, n)
    churned = ((plan == "basic") & (tenure < 30)) | (seats > 15)
    plan[rng.random(n) < 0.15] = None
    tenure[rng.random(n) < 0.15] = np.nan
    frame = pd.DataFrame({"plan": plan, "tenure": tenure, "seats": seats})
    return frame, churned.astype(int)


def missing_value_cases() -> list[Case]:
    x, y = cancer_with_gaps()
    rows = x[spread(len(x))]
    frame, churned = customers()
    frame_rows = frame.iloc[spread(len(frame))]

    def numbers() -> Pipeline:
        return Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])

    def churn(plan: Any) -> Pipeline:
        columns = ColumnTransformer(
            [("plan", plan, ["plan"]), ("numbers", numbers(), ["tenure", "seats"])]
        )
        return Pipeline([("columns", columns), ("model", LogisticRegression())]).fit(frame, churned)

    imputed_plan = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="unknown")),
            ("encode", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    return [
        Case(
            "hgb-nan",
            "missing values",
            "export",
            HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(x, y),
            rows,
            missing=True,
        ),
        Case(
            "xgb-nan",
            "missing values",
            "boosting",
            xgboost.XGBClassifier(n_estimators=8, max_depth=3).fit(x, y),
            rows,
            missing=True,
        ),
        Case(
            "lgbm-nan",
            "missing values",
            "boosting",
            lightgbm.LGBMClassifier(n_estimators=8, num_leaves=7, verbose=-1).fit(x, y),
            rows,
            missing=True,
        ),
        Case(
            "imputer-nan",
            "missing values",
            "export",
            Pipeline(
                [
                    ("impute", SimpleImputer(strategy="median")),
                    ("scale", StandardScaler()),
                    ("model", LogisticRegression(max_iter=1000)),
                ]
            ).fit(x, y),
            rows,
            missing=True,
        ),
        Case(
            "churn-imputed",
            "missing values, strings",
            "export",
            churn(imputed_plan),
            frame_rows,
            int_columns=("seats",),
            missing=True,
        ),
        Case(
            "churn-encoded",
            "missing values, strings",
            "export",
            churn(OneHotEncoder(handle_unknown="ignore")),
            frame_rows,
            missing=True,
        ),
    ]


def answer_cases() -> list[Case]:
    linnerud = load_linnerud(as_frame=True)
    body, targets = linnerud.data, linnerud.target
    names = list(targets.columns)
    wine = load_wine().data
    wine_rows = wine[spread(len(wine))]
    reviews = pd.Series(
        [
            "The cat sat on the mat",
            "a DOG barked loudly all night",
            "cats and dogs, together at last",
            "The Dog sat; the cat left",
            "loud cat, quiet dog",
            "Nothing about pets here",
        ]
        * 4,
        name="review",
    )
    liked = np.array([1, 0, 1, 0, 0, 1] * 4)

    def scaled(model: Any) -> Pipeline:
        return Pipeline([("scale", StandardScaler()), ("model", model)]).fit(wine)

    def text(vectorizer: Any) -> Pipeline:
        return Pipeline([("words", vectorizer), ("model", LogisticRegression())]).fit(
            reviews, liked
        )

    return [
        Case(
            "linnerud-ridge",
            "several targets",
            "export",
            Ridge().fit(body, targets),
            body,
            targets=names,
            atol=1e-3,
        ),
        Case(
            "linnerud-forest",
            "several targets",
            "export",
            RandomForestRegressor(8, random_state=0).fit(body, targets),
            body,
            targets=names,
            atol=1e-3,
        ),
        Case(
            "linnerud-multi",
            "several targets",
            "export",
            MultiOutputRegressor(Ridge()).fit(body, targets),
            body,
            targets=names,
            atol=1e-3,
        ),
        Case("tfidf", "text", "export", text(TfidfVectorizer()), reviews),
        Case("count", "text", "export", text(CountVectorizer(ngram_range=(1, 2))), reviews),
        Case(
            "isolation-forest",
            "anomaly detection",
            "export",
            IsolationForest(n_estimators=20, random_state=0).fit(wine),
            wine_rows,
            atol=1e-4,
        ),
        Case(
            "one-class-svm",
            "anomaly detection",
            "export",
            scaled(OneClassSVM(nu=0.1)),
            wine_rows,
            atol=1e-4,
        ),
        Case(
            "local-outlier-factor",
            "anomaly detection",
            "export",
            scaled(LocalOutlierFactor(novelty=True)),
            wine_rows,
            atol=1e-4,
        ),
        Case(
            "kmeans",
            "clustering",
            "export",
            KMeans(3, n_init=3, random_state=0).fit(wine),
            wine_rows,
            atol=1e-2,
        ),
        Case(
            "minibatch-kmeans",
            "clustering",
            "export",
            MiniBatchKMeans(3, n_init=3, random_state=0).fit(wine),
            wine_rows,
            atol=1e-2,
        ),
    ]


def json_value(value: Any) -> Any:
    """A value as a JSON request carries it: NaN and None as null."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def instances(sample: Any) -> list[Any]:
    if isinstance(sample, pd.Series):
        return [[text] for text in sample]
    if isinstance(sample, pd.DataFrame):
        return [
            {k: json_value(v) for k, v in row.items()} for row in sample.to_dict(orient="records")
        ]
    return [[json_value(v) for v in row] for row in np.asarray(sample, dtype=np.float64)]


def close(got: Any, want: Any, case: Case) -> None:
    np.testing.assert_allclose(
        np.asarray(got, dtype=np.float64),
        np.asarray(want, dtype=np.float64),
        rtol=1e-4,
        atol=case.atol,
        err_msg=case.name,
    )


def check_answer(case: Case, answer: dict[str, Any]) -> None:
    """The server's answer against the library's own, in the server's vocabulary."""
    model, rows = case.model, case.sample
    predicted = np.asarray(model.predict(rows))
    if case.task == "classification":
        classes = list(model.classes_)
        names: list[Any] = case.labels or [c if isinstance(c, str) else int(c) for c in classes]
        by_class = {str(c): n for c, n in zip(classes, names, strict=True)}
        assert answer["predictions"] == [by_class[str(p)] for p in predicted], case.name
        keys = [str(n) for n in names]
        assert all(list(row) == keys for row in answer["probabilities"]), case.name
        got = [list(row.values()) for row in answer["probabilities"]]
        close(got, model.predict_proba(rows), case)
    elif case.task == "anomaly_detection":
        assert answer["predictions"] == predicted.tolist(), case.name
        assert answer["outliers"] == (predicted == -1).tolist(), case.name
        close(answer["scores"], model.decision_function(rows), case)
    elif case.task == "clustering":
        assert answer["predictions"] == predicted.tolist(), case.name
        keys = [str(i) for i in range(model.n_clusters)]
        assert all(list(row) == keys for row in answer["distances"]), case.name
        close([list(row.values()) for row in answer["distances"]], model.transform(rows), case)
    elif case.targets:
        assert all(list(row) == case.targets for row in answer["predictions"]), case.name
        close([list(row.values()) for row in answer["predictions"]], predicted, case)
    else:
        close(answer["predictions"], predicted, case)


def check(case: Case, server_url: str) -> int:
    """samples_checked for the case's version, after checking its answers against the library."""
    detail = httpx.get(f"{server_url}/models/{case.name}", timeout=10).json()
    (entry,) = [v for v in detail["versions"] if v["version"] == 1]
    assert entry["state"] == "AVAILABLE", (case.name, entry)
    checked = entry.get("samples_checked")
    assert isinstance(checked, int) and checked > 0, (case.name, entry)

    sent = instances(case.sample)
    assert case.missing == any(
        v is None for row in sent for v in (row.values() if isinstance(row, dict) else row)
    ), case.name
    response = httpx.post(
        f"{server_url}/predict/batch",
        json={"model": case.name, "instances": sent},
        timeout=30,
    )
    assert response.status_code == 200, (case.name, response.text)
    check_answer(case, response.json())
    return checked


def estimator_name(model: Any) -> str:
    steps = model.named_steps.values() if isinstance(model, Pipeline) else [model]
    return " → ".join(type(step).__name__ for step in steps)


def missing_column(case: Case) -> str:
    if not case.takes_missing:
        return "refused"
    return "taken, in the sample" if case.missing else "taken"


def matrix(cases: list[Case], results: list[int]) -> str:
    lines = [
        "| family | estimator | task | answers | input | missing values | extra | samples checked "
        "| equal within |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case, checked in zip(cases, results, strict=True):
        lines.append(
            f"| {case.family} | {estimator_name(case.model)} | {case.task} | {case.answers()} | "
            f"{case.input} | {missing_column(case)} | `{case.extra}` | {checked} | "
            f"rtol 1e-4, atol {case.atol:g} |"
        )
    return "\n".join(lines)


def readme_matrix() -> str:
    text = (REPO / "README.md").read_text()
    found = re.search(re.escape(MATRIX_START) + r"\n(.*?)\n" + re.escape(MATRIX_END), text, re.S)
    return found.group(1) if found else ""


def test_support_matrix(tmp_path: Path) -> None:
    # One thread per library: the boosting libraries' thread pools, fighting over a loaded
    # machine's cores, made fitting the cases several times slower.
    with threadpool_limits(1):
        cases = build_cases()
        store = tmp_path / "store"
        export_all(cases, store)
        with start_server(store, tmp_path) as server:
            results = [check(case, server.url) for case in cases]
    table = matrix(cases, results)
    assert table == readme_matrix(), (
        f"the README's support matrix is out of date; it is now:\n{table}"
    )


def describe_inputs(folder: Path) -> str:
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    if len(inputs) > 1:
        ints = [i.name for i in inputs if i.type == "tensor(int64)"]
        return "one per column" + (f" (int64 {', '.join(ints)})" if ints else "")
    return {
        "tensor(float)": "float32",
        "tensor(double)": "float64",
        "tensor(string)": "one string column",
    }[inputs[0].type]


def export_all(cases: list[Case], store: Path) -> None:
    for case in cases:
        folder = export_model(
            case.model,
            store,
            case.name,
            case.sample,
            labels=case.labels,
            targets=case.targets,
            int_columns=case.int_columns,
            atol=case.atol,
            double=case.double,
        )
        metadata = json.loads((folder / "metadata.json").read_text())
        assert metadata["task"] == case.task, case.name
        case.takes_missing = metadata.get("missing_values", False)
        case.input = describe_inputs(folder)
        assert case.takes_missing or not case.missing, case.name
