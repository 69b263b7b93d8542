"""ml.export and missing values: which versions take them, rows with nulls in samples.json, and
string columns whose pipeline imputes or encodes a missing value."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import xgboost
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ml.export import ExportError, export_model
from ml.export.missing import takes_missing


def read_json(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text())


@pytest.fixture(scope="module")
def cancer_with_gaps() -> tuple[np.ndarray, np.ndarray]:
    """Breast cancer data with a tenth of the values missing."""
    x, y = load_breast_cancer(return_X_y=True)
    x = x.copy()
    x[np.random.default_rng(0).random(x.shape) < 0.1] = np.nan
    return x, y


def expected_probabilities(folder: Path) -> np.ndarray:
    rows = read_json(folder, "samples.json")["expected"]["probabilities"]
    return np.array([list(p.values()) for p in rows])


def sample_rows(folder: Path) -> np.ndarray:
    instances = read_json(folder, "samples.json")["instances"]
    return np.array([[np.nan if v is None else v for v in row] for row in instances])


@pytest.mark.parametrize(
    "model",
    [
        HistGradientBoostingClassifier(max_iter=10, random_state=0),
        xgboost.XGBClassifier(n_estimators=8, max_depth=3),
        lightgbm.LGBMClassifier(n_estimators=8, num_leaves=7, verbose=-1),
        Pipeline(
            [
                ("impute", SimpleImputer()),
                ("scale", StandardScaler()),
                ("model", LogisticRegression(max_iter=1000)),
            ]
        ),
    ],
    ids=["hist-gradient-boosting", "xgboost", "lightgbm", "imputer-pipeline"],
)
def test_models_that_handle_nan_take_missing_values(tmp_path, cancer_with_gaps, model):
    x, y = cancer_with_gaps
    model.fit(x, y)
    folder = export_model(model, tmp_path, "cancer", x)

    assert read_json(folder, "metadata.json")["missing_values"] is True
    assert "missing_string" not in read_json(folder, "metadata.json")
    rows = sample_rows(folder)
    assert np.isnan(rows).any()  # rows with nulls are among the samples
    np.testing.assert_allclose(
        expected_probabilities(folder), model.predict_proba(rows), rtol=1e-4, atol=1e-5
    )
    session = ort.InferenceSession(str(folder / "model.onnx"))
    _, probabilities = session.run(None, {"input": x.astype(np.float32)})
    np.testing.assert_allclose(probabilities, model.predict_proba(x), rtol=1e-4, atol=1e-5)


def test_model_without_nan_handling_refuses_a_sample_with_gaps(tmp_path, cancer_with_gaps):
    x, y = cancer_with_gaps
    clean = np.nan_to_num(x)
    model = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]).fit(clean, y)
    folder = export_model(model, tmp_path, "cancer", clean)
    assert "missing_values" not in read_json(folder, "metadata.json")

    with pytest.raises(ExportError) as caught:
        export_model(model, tmp_path, "cancer", x)
    message = str(caught.value)
    assert "has a missing value, which LogisticRegression does not take" in message
    assert "try: impute it in the pipeline" in message


def test_scikit_learn_forest_missing_values_are_not_claimed(tmp_path, cancer_with_gaps):
    # scikit-learn's own trees route NaN, but the converted forest does not: the version
    # refuses missing values, and a sample without them exports.
    x, y = cancer_with_gaps
    model = RandomForestClassifier(5, max_depth=3, random_state=0).fit(x, y)
    assert not takes_missing(model)
    rows = x[~np.isnan(x).any(axis=1)]
    folder = export_model(model, tmp_path, "forest", rows)
    assert "missing_values" not in read_json(folder, "metadata.json")


@pytest.fixture(scope="module")
def customers() -> tuple[pd.DataFrame, np.ndarray]:
    """A plan (string) and a tenure (float) column, each missing in some rows."""
    rng = np.random.default_rng(4)
    n = 240
    plan = rng.choice(["basic", "plus", "pro"], n).astype(object)
    tenure = rng.uniform(0, 60, n)
    churned = ((plan == "basic") & (tenure < 30)) | (rng.random(n) < 0.1)
    plan[rng.random(n) < 0.15] = None
    tenure[rng.random(n) < 0.15] = np.nan
    return pd.DataFrame({"plan": plan, "tenure": tenure}), churned.astype(int)


def numbers() -> Pipeline:
    return Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])


@pytest.mark.parametrize(
    ("plan_branch", "missing_string"),
    [
        (OneHotEncoder(handle_unknown="ignore"), "nan"),  # learnt NaN as a category
        (
            Pipeline(
                [
                    ("impute", SimpleImputer(strategy="constant", fill_value="unknown")),
                    ("encode", OneHotEncoder(handle_unknown="ignore")),
                ]
            ),
            "",
        ),
        (
            Pipeline(
                [
                    ("impute", SimpleImputer(strategy="most_frequent")),
                    ("encode", OneHotEncoder()),
                ]
            ),
            "",
        ),
    ],
    ids=["one-hot-with-nan", "constant-imputer", "most-frequent-imputer"],
)
def test_string_column_with_missing_values(tmp_path, customers, plan_branch, missing_string):
    frame, churned = customers
    columns = ColumnTransformer(
        [("plan", plan_branch, ["plan"]), ("tenure", numbers(), ["tenure"])]
    )
    model = Pipeline([("columns", columns), ("model", LogisticRegression())]).fit(frame, churned)
    folder = export_model(model, tmp_path, "churn", frame)

    meta = read_json(folder, "metadata.json")
    assert meta["missing_values"] is True
    assert meta["missing_string"] == missing_string
    instances = read_json(folder, "samples.json")["instances"]
    assert any(row["plan"] is None for row in instances)
    assert any(row["tenure"] is None for row in instances)
    rows = pd.DataFrame(instances).astype({"tenure": float})
    np.testing.assert_allclose(
        expected_probabilities(folder), model.predict_proba(rows), rtol=1e-4, atol=1e-5
    )
    # The graph fed the marker answers a missing plan as the library answers None.
    session = ort.InferenceSession(str(folder / "model.onnx"))
    feed = {
        "plan": np.array([[missing_string]], dtype=object),
        "tenure": np.array([[12.5]], dtype=np.float32),
    }
    _, probabilities = session.run(None, feed)
    # A missing plan as pandas holds it in a string column: NaN.
    missing_plan = pd.Series([None], dtype=frame["plan"].dtype)
    library = model.predict_proba(pd.DataFrame({"plan": missing_plan, "tenure": [12.5]}))
    np.testing.assert_allclose(probabilities, library, rtol=1e-4, atol=1e-5)


def test_passthrough_to_hist_gradient_boosting_takes_missing_values(tmp_path, customers):
    frame, churned = customers
    columns = ColumnTransformer(
        [("plan", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["plan"])],
        remainder="passthrough",
    )
    model = Pipeline(
        [("columns", columns), ("model", HistGradientBoostingClassifier(max_iter=10))]
    ).fit(frame, churned)
    folder = export_model(model, tmp_path, "churn", frame)
    assert read_json(folder, "metadata.json")["missing_values"] is True


def test_encoder_that_refuses_unknowns_refuses_missing_strings(tmp_path, customers):
    frame, churned = customers
    complete = frame.dropna().reset_index(drop=True)
    columns = ColumnTransformer(
        [("plan", OneHotEncoder(), ["plan"]), ("tenure", numbers(), ["tenure"])]
    )
    model = Pipeline([("columns", columns), ("model", LogisticRegression())])
    model.fit(complete, churned[: len(complete)])
    assert not takes_missing(model)
    folder = export_model(model, tmp_path, "churn", complete)
    assert "missing_values" not in read_json(folder, "metadata.json")


def test_integer_columns_cannot_be_missing(tmp_path, customers):
    frame, churned = customers
    frame = frame.assign(seats=np.arange(len(frame)) % 5)
    columns = ColumnTransformer(
        [("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])], remainder=numbers()
    )
    model = Pipeline([("columns", columns), ("model", LogisticRegression())]).fit(frame, churned)
    folder = export_model(model, tmp_path, "churn", frame, int_columns=["seats"])
    meta = read_json(folder, "metadata.json")
    assert meta["missing_values"] is True
    (seats,) = [
        i
        for i in ort.InferenceSession(str(folder / "model.onnx")).get_inputs()
        if i.name == "seats"
    ]
    assert seats.type == "tensor(int64)"
    with pytest.raises(ExportError, match="'tenure' has missing values, which an integer input"):
        export_model(model, tmp_path, "churn", frame, int_columns=["tenure"])
    with pytest.raises(ExportError, match="'seats' is in int_columns but holds fractions"):
        export_model(model, tmp_path, "churn", frame.assign(seats=0.5), int_columns=["seats"])
