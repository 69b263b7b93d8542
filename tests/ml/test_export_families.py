"""ml.export beyond linear models: HistGradientBoosting (numeric and categorical), XGBoost and
LightGBM alone and in pipelines, samples.json, and the errors a data scientist reads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import google.protobuf
import joblib
import lightgbm
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import xgboost
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ml.cli.export import main
from ml.export import ExportError, export_model
from ml.export import boosting as export_boosting
from ml.export import hgb as export_hgb
from ml.export.samples import MAX_SAMPLES


def read_json(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text())


def run_onnx(folder: Path, feed: dict) -> list:
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


@pytest.fixture(scope="module")
def iris32() -> tuple[np.ndarray, np.ndarray]:
    """Iris as float32 values: what the ONNX model sees equals what the library was fitted on."""
    x, y = load_iris(return_X_y=True)
    return x.astype(np.float32).astype(np.float64), y


@pytest.fixture(scope="module")
def categorical_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column 0 an integer-coded category (0-5) that drives the target, column 1 a number; a few
    missing values, and rows with categories the model never saw, in the sample only."""
    rng = np.random.default_rng(0)
    n = 300
    category = rng.integers(0, 6, n).astype(np.float64)
    number = rng.normal(size=n).astype(np.float32).astype(np.float64)
    x = np.c_[category, number]
    x[rng.random(n) < 0.05, 0] = np.nan
    classes = (np.isin(category, [1, 3, 4]) ^ (number > 0.3)).astype(int)
    target = np.where(np.isin(category, [0, 2, 5]), 3.0, -1.0) + 2 * number
    sample = x.copy()
    sample[:4, 0] = [7.0, 9.0, 100.0, np.nan]
    return x, classes, target, sample


def test_hist_gradient_boosting_exports_with_protobuf_7(tmp_path, iris32):
    """The trap: skl2onnx 1.20 writes Python booleans that protobuf 7 refuses in tree nodes."""
    x, y = iris32
    classifier = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(x, y)
    folder = export_model(classifier, tmp_path, "hgb", x)
    labels, probabilities = run_onnx(folder, {"input": x.astype(np.float32)})
    np.testing.assert_array_equal(labels, classifier.predict(x))
    np.testing.assert_allclose(probabilities, classifier.predict_proba(x), rtol=1e-4, atol=1e-5)

    d, target = load_diabetes(return_X_y=True)
    d = d.astype(np.float32).astype(np.float64)
    regressor = HistGradientBoostingRegressor(max_iter=10, random_state=0).fit(d, target)
    folder = export_model(regressor, tmp_path, "hgb-reg", d, rtol=1e-4, atol=1e-3)
    assert read_json(folder, "metadata.json")["task"] == "regression"


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_hist_gradient_boosting_with_categorical_features(tmp_path, categorical_table, kind):
    x, classes, target, sample = categorical_table
    if kind == "classifier":
        model = HistGradientBoostingClassifier(max_iter=15, categorical_features=[0])
        model.fit(x, classes)
    else:
        model = HistGradientBoostingRegressor(max_iter=15, categorical_features=[0])
        model.fit(x, target)
    assert any(n["is_categorical"] for it in model._predictors for t in it for n in t.nodes)

    folder = export_model(model, tmp_path, "cats", sample, atol=1e-4)

    outputs = run_onnx(folder, {"input": sample.astype(np.float32)})
    if kind == "classifier":
        np.testing.assert_array_equal(outputs[0], model.predict(sample))
    else:
        np.testing.assert_allclose(outputs[0].ravel(), model.predict(sample), rtol=1e-4, atol=1e-4)
    samples = read_json(folder, "samples.json")
    # NaN cannot be sent as JSON: rows with missing values stay out of samples.json.
    rows = np.array(samples["instances"])
    assert len(rows) == MAX_SAMPLES
    assert np.isfinite(rows).all()
    expected = model.predict(rows)
    if kind == "classifier":
        assert samples["expected"]["predictions"] == expected.tolist()
    else:
        np.testing.assert_allclose(samples["expected"]["predictions"], expected, atol=1e-4)


def test_categories_from_pandas_strings_get_a_readable_error(tmp_path):
    frame = pd.DataFrame(
        {"color": pd.Categorical(["red", "blue", "green"] * 40), "size": np.arange(120.0)}
    )
    model = HistGradientBoostingClassifier(max_iter=3).fit(frame, np.arange(120) % 2)
    with pytest.raises(ExportError, match="sample must be numeric"):
        export_model(model, tmp_path, "cats", frame)
    assert not tmp_path.joinpath("cats").exists()


@pytest.mark.parametrize(
    "model",
    [
        xgboost.XGBClassifier(n_estimators=8, max_depth=3),
        lightgbm.LGBMClassifier(n_estimators=8, num_leaves=7, verbose=-1),
    ],
    ids=["xgboost", "lightgbm"],
)
def test_boosting_classifier_with_labels_names_classes_by_position(tmp_path, iris32, model):
    x, y = iris32
    model.fit(x, y)
    folder = export_model(model, tmp_path, "boost", x, labels=["setosa", "versicolor", "other"])

    meta = read_json(folder, "metadata.json")
    assert meta["labels"] == ["setosa", "versicolor", "other"]
    assert type(model).__module__.split(".")[0] in meta["framework"]
    assert "onnxmltools" in meta["framework"]
    samples = read_json(folder, "samples.json")
    names = np.array(meta["labels"])
    rows = np.array(samples["instances"])
    assert samples["expected"]["predictions"] == names[model.predict(rows)].tolist()
    probabilities = model.predict_proba(rows)
    for row, answer in enumerate(samples["expected"]["probabilities"]):
        assert list(answer) == meta["labels"]
        np.testing.assert_allclose(list(answer.values()), probabilities[row], atol=1e-5)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_xgboost_fitted_on_named_columns_exports(tmp_path, kind):
    # Fitted on a DataFrame, XGBoost's trees name their features; onnxmltools wants f0, f1, ...
    data = load_iris(as_frame=True)
    frame = data.frame.drop(columns="target").rename(columns=lambda c: c.replace(" (cm)", ""))
    if kind == "classifier":
        model = xgboost.XGBClassifier(n_estimators=8, max_depth=3).fit(frame, data.target)
    else:
        model = xgboost.XGBRegressor(n_estimators=8, max_depth=3).fit(frame, data.target * 1.5)
    folder = export_model(model, tmp_path, "named", frame.iloc[::5])

    assert read_json(folder, "metadata.json")["features"] == list(frame.columns)
    assert list(model.get_booster().feature_names) == list(frame.columns)  # left as it was
    rows = frame.iloc[::7]
    label, *_ = run_onnx(folder, {"input": rows.to_numpy(np.float32)})
    if kind == "classifier":
        assert label.tolist() == model.predict(rows).tolist()
    else:
        np.testing.assert_allclose(label.ravel(), model.predict(rows), rtol=1e-5, atol=1e-5)


def test_lightgbm_integer_classes_3_7_9_answer_as_numbers(tmp_path, iris32):
    x, y = iris32
    model = lightgbm.LGBMClassifier(n_estimators=5, num_leaves=5, verbose=-1)
    model.fit(x, np.array([3, 7, 9])[y])

    folder = export_model(model, tmp_path, "codes", x)

    assert "labels" not in read_json(folder, "metadata.json")
    expected = read_json(folder, "samples.json")["expected"]
    assert set(expected["predictions"]) == {3, 7, 9}
    assert all(list(p) == ["3", "7", "9"] for p in expected["probabilities"])


@pytest.mark.parametrize(
    "final",
    [
        xgboost.XGBRegressor(n_estimators=10, max_depth=3),
        lightgbm.LGBMRegressor(n_estimators=10, num_leaves=7, verbose=-1),
    ],
    ids=["xgboost", "lightgbm"],
)
def test_boosting_regressor_after_one_hot_columns(tmp_path, final):
    rng = np.random.default_rng(3)
    n = 120
    frame = pd.DataFrame(
        {
            "city": rng.choice(["oslo", "lima", "pune"], n).astype(object),
            "rooms": rng.integers(1, 6, n).astype(np.int64),
            "area": rng.normal(70, 20, n).astype(np.float32).astype(np.float64),
        }
    )
    price = 1000 * frame["rooms"] + 30 * frame["area"] + (frame["city"] == "oslo") * 900
    columns = ColumnTransformer(
        [("city", OneHotEncoder(handle_unknown="ignore"), ["city"])], remainder="passthrough"
    )
    model = Pipeline([("columns", columns), ("model", final)]).fit(frame, price)

    folder = export_model(model, tmp_path, "houses", frame, atol=1e-2)

    samples = read_json(folder, "samples.json")
    assert len(samples["instances"]) == MAX_SAMPLES
    first = samples["instances"][0]
    assert list(first) == ["city", "rooms", "area"]
    # rooms is a float input (no int_columns), so its whole numbers travel as floats
    assert isinstance(first["city"], str) and isinstance(first["rooms"], float)
    rows = pd.DataFrame(samples["instances"])
    np.testing.assert_allclose(
        samples["expected"]["predictions"], model.predict(rows), rtol=1e-4, atol=1e-2
    )


def test_rows_with_missing_values_travel_as_null(tmp_path, categorical_table):
    x, classes, _, _ = categorical_table
    model = HistGradientBoostingClassifier(max_iter=3).fit(x, classes)
    sample = x[:20].copy()
    sample[:, 1] = np.nan
    folder = export_model(model, tmp_path, "gaps", sample)
    assert read_json(folder, "metadata.json")["missing_values"] is True
    samples = read_json(folder, "samples.json")
    assert [row[1] for row in samples["instances"]] == [None] * 20
    assert samples["expected"]["predictions"] == model.predict(sample).tolist()


def test_samples_hold_onnx_outputs_exactly(tmp_path, iris32):
    x, y = iris32
    species = np.array(["setosa", "versicolor", "virginica"])[y]
    model = LogisticRegression(max_iter=500).fit(x, species)
    folder = export_model(model, tmp_path, "iris", x, rtol=1e-3, atol=1e-4)

    samples = read_json(folder, "samples.json")
    assert (samples["rtol"], samples["atol"]) == (1e-3, 1e-4)
    rows = np.array(samples["instances"], dtype=np.float32)
    assert len(rows) == MAX_SAMPLES
    # Spread over the sample, so every class of the sorted iris rows is there.
    assert set(samples["expected"]["predictions"]) == set(species)
    labels, probabilities = run_onnx(folder, {"input": rows})
    assert samples["expected"]["predictions"] == labels.tolist()
    assert [list(p.values()) for p in samples["expected"]["probabilities"]] == (
        probabilities.tolist()
    )


class Unconvertible(BaseEstimator, TransformerMixin):
    def fit(self, x, y=None):
        return self

    def transform(self, x):
        return x


def test_unknown_step_is_named_with_cause_and_hint(tmp_path, iris32):
    x, y = iris32
    model = Pipeline([("clean", Unconvertible()), ("model", LogisticRegression(max_iter=300))]).fit(
        x, y
    )
    with pytest.raises(ExportError) as caught:
        export_model(model, tmp_path, "iris", x)
    message = str(caught.value)
    assert message.startswith("could not convert Unconvertible (step 'clean')")
    assert "\n  cause: " in message
    assert "\n  try: " in message
    assert len(message.splitlines()) <= 4
    assert not tmp_path.joinpath("iris").exists()


def test_float32_cancellation_suggests_double_input(tmp_path):
    x, y = cancellation()
    model = LinearRegression().fit(x, y)

    with pytest.raises(ExportError) as caught:
        export_model(model, tmp_path, "diff", x)
    message = str(caught.value)
    assert re.search(r"\d+ of 80 sample rows disagree", message)
    assert "float32 is the cause" in message
    assert not tmp_path.joinpath("diff").exists()

    folder = export_model(model, tmp_path, "diff", x, double=True)
    (prediction,) = run_onnx(folder, {"input": x})
    np.testing.assert_allclose(prediction.ravel(), model.predict(x), rtol=1e-4, atol=1e-5)
    assert isinstance(read_json(folder, "samples.json")["instances"][0][0], float)


def test_hist_gradient_boosting_on_float64_data_exports_in_float32(tmp_path):
    # Raw float64 data, thresholds halfway between two values: the float32 model still answers
    # the rows as written (cast to float32, as the server casts them) as the library does.
    x, y = load_diabetes(return_X_y=True)
    model = HistGradientBoostingRegressor(max_iter=20, random_state=0).fit(x, y)
    folder = export_model(model, tmp_path, "diabetes", x)

    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.type for i in session.get_inputs()] == ["tensor(float)"]
    (prediction,) = session.run(None, {"input": x.astype(np.float32)})
    np.testing.assert_allclose(prediction.ravel(), model.predict(x), rtol=1e-4, atol=1e-5)
    samples = read_json(folder, "samples.json")
    assert samples["instances"][0] == x[0].tolist()  # the rows as written, not float32-rounded

    folder = export_model(model, tmp_path, "diabetes", x, double=True)
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.type for i in session.get_inputs()] == ["tensor(double)"]
    assert [o.type for o in session.get_outputs()] == ["tensor(double)"]
    (prediction,) = session.run(None, {"input": x})
    np.testing.assert_allclose(prediction.ravel(), model.predict(x), rtol=1e-4, atol=1e-4)


def test_boolean_classes_answer_as_0_and_1(tmp_path, iris32):
    x, y = iris32
    model = HistGradientBoostingClassifier(max_iter=5).fit(x, y == 2)
    folder = export_model(model, tmp_path, "virginica", x)
    expected = read_json(folder, "samples.json")["expected"]
    assert set(expected["predictions"]) == {0, 1}
    assert list(expected["probabilities"][0]) == ["0", "1"]
    assert "labels" not in read_json(folder, "metadata.json")


def test_stock_converter_under_protobuf_7_fails_readably(tmp_path, iris32, monkeypatch):
    """Without the wrapped converters, the trap as a data scientist would meet it: the error
    names the estimator and the innermost cause, not the converter's dump of attributes."""
    monkeypatch.setattr(export_hgb, "custom_converters", dict)
    x, y = iris32
    model = Pipeline(
        [("scale", StandardScaler()), ("model", HistGradientBoostingClassifier(max_iter=3))]
    ).fit(x, y)
    if int(google.protobuf.__version__.split(".")[0]) < 7:
        assert export_model(model, tmp_path, "hgb", x).is_dir()
        return
    with pytest.raises(ExportError) as caught:
        export_model(model, tmp_path, "hgb", x)
    lines = str(caught.value).splitlines()
    assert lines[0] == "could not convert HistGradientBoostingClassifier (step 'model')"
    assert lines[1] == (
        "  cause: TypeError: Field onnx.AttributeProto.ints: Expected an int, got a boolean."
    )
    assert lines[2].startswith("  try: protobuf 7 refuses the booleans")
    assert len(lines) == 3
    assert not tmp_path.joinpath("hgb").exists()


def cancellation() -> tuple[np.ndarray, np.ndarray]:
    """Two large, nearly equal features whose difference is the answer: float32 arithmetic
    loses it, float64 keeps it."""
    rng = np.random.default_rng(5)
    base = rng.uniform(1e4, 2e4, 80)
    x = np.c_[base, base + rng.normal(0, 1, 80)]
    return x, 1000.0 * (x[:, 1] - x[:, 0])


def test_cli_double_writes_a_float64_input(tmp_path, capsys):
    x, y = cancellation()
    model = LinearRegression().fit(x, y)
    model_file = tmp_path / "model.joblib"
    joblib.dump(model, model_file)
    sample = tmp_path / "rows.csv"
    pd.DataFrame(x, columns=["before", "after"]).to_csv(sample, index=False)
    store = tmp_path / "store"
    args = [str(model_file), "--name", "d", "--sample", str(sample), "--store", str(store)]

    assert main(args) == 1
    assert "--double" in capsys.readouterr().err
    assert main([*args, "--double"]) == 0
    session = ort.InferenceSession(
        str(store / "d" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    assert [i.type for i in session.get_inputs()] == ["tensor(double)"]


def test_missing_boosting_extra_says_what_to_install(tmp_path, iris32, monkeypatch):
    def not_installed(library: str) -> None:
        raise ModuleNotFoundError("No module named 'onnxmltools'", name="onnxmltools")

    monkeypatch.setattr(export_boosting, "_register", not_installed)
    x, y = iris32
    model = xgboost.XGBClassifier(n_estimators=2).fit(x, y)
    with pytest.raises(ExportError, match=r"pip install 'onnx-model-server\[boosting\]'"):
        export_model(model, tmp_path, "boost", x)
