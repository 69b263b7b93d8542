"""ml.export: conversion, parity check, atomic version folders and the model-export CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import joblib
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ml.cli.export import main
from ml.export import ExportError, export_model, writer
from ml.export import check as export_check

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SPECIES = ["setosa", "versicolor", "virginica"]
# Kept before any test monkeypatches onnxruntime.InferenceSession with a wrapper around it.
REAL_SESSION = ort.InferenceSession


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    data = load_iris()
    return data.data, data.target_names[data.target]


@pytest.fixture(scope="module")
def classifier(iris) -> LogisticRegression:
    x, y = iris
    return LogisticRegression(max_iter=1000).fit(x, y)


@pytest.fixture(scope="module")
def mixed_frame() -> tuple[pd.DataFrame, np.ndarray]:
    """A small table with a string, an int and a float column, and a numeric target."""
    rng = np.random.default_rng(0)
    n = 60
    frame = pd.DataFrame(
        {
            "color": rng.choice(["red", "green", "blue"], n).astype(object),
            "count": rng.integers(0, 10, n).astype(np.int64),
            "size": rng.normal(5.0, 2.0, n),
        }
    )
    target = 3.0 * frame["count"] + 2.0 * frame["size"] + (frame["color"] == "red") * 4.0
    return frame, target.to_numpy()


@pytest.fixture(scope="module")
def column_pipeline(mixed_frame) -> Pipeline:
    frame, target = mixed_frame
    columns = ColumnTransformer(
        [
            ("color", OneHotEncoder(handle_unknown="ignore"), ["color"]),
            ("numbers", StandardScaler(), ["count", "size"]),
        ]
    )
    return Pipeline([("columns", columns), ("model", LinearRegression())]).fit(frame, target)


def session(folder: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])


def metadata(folder: Path) -> dict:
    return json.loads((folder / "metadata.json").read_text())


def store_entries(store: Path) -> list[str]:
    """Every path under the store, so a test can tell that nothing was written."""
    return sorted(str(p.relative_to(store)) for p in store.rglob("*")) if store.exists() else []


def test_classifier_export_writes_version_1(tmp_path, iris, classifier):
    x, _ = iris
    folder = export_model(
        classifier,
        tmp_path,
        "iris",
        x,
        feature_names=IRIS_FEATURES,
        description="logistic regression",
        metrics={"accuracy": 0.97},
    )

    assert folder == tmp_path / "iris" / "1"
    assert sorted(p.name for p in folder.iterdir()) == [
        "metadata.json",
        "model.onnx",
        "samples.json",
    ]
    assert store_entries(tmp_path) == [
        "iris",
        "iris/1",
        "iris/1/metadata.json",
        "iris/1/model.onnx",
        "iris/1/samples.json",
    ]
    meta = metadata(folder)
    assert meta["task"] == "classification"
    assert meta["features"] == IRIS_FEATURES
    assert meta["labels"] == SPECIES
    assert meta["description"] == "logistic regression"
    assert meta["metrics"] == {"accuracy": 0.97}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["created_at"])
    assert set(meta["framework"]) == {"scikit-learn", "skl2onnx", "onnx", "onnxruntime", "python"}
    assert meta["framework"]["python"].startswith("3.")

    sess = session(folder)
    assert [(i.name, i.type, i.shape) for i in sess.get_inputs()] == [
        ("input", "tensor(float)", [None, 4])
    ]
    labels, probabilities = sess.run(None, {"input": x.astype(np.float32)})
    # No ZipMap: probabilities are a plain [N, C] float tensor in the order of `labels`.
    assert probabilities.dtype == np.float32
    assert probabilities.shape == (len(x), 3)
    np.testing.assert_array_equal(labels, classifier.predict(x))
    np.testing.assert_allclose(probabilities, classifier.predict_proba(x), rtol=1e-4, atol=1e-5)


def test_second_export_is_next_version(tmp_path, iris, classifier):
    x, _ = iris
    export_model(classifier, tmp_path, "iris", x)
    assert export_model(classifier, tmp_path, "iris", x) == tmp_path / "iris" / "2"


def test_next_version_ignores_non_version_folders(tmp_path, iris, classifier):
    x, _ = iris
    for name in ("5", ".tmp-9-abcd", "notes", "07"):
        (tmp_path / "iris" / name).mkdir(parents=True)
    assert export_model(classifier, tmp_path, "iris", x) == tmp_path / "iris" / "8"


def test_existing_version_is_refused_and_nothing_written(tmp_path, iris, classifier):
    x, _ = iris
    folder = export_model(classifier, tmp_path, "iris", x, version=3)
    before = store_entries(tmp_path)
    onnx_bytes = (folder / "model.onnx").read_bytes()

    with pytest.raises(ExportError, match="already exists"):
        export_model(classifier, tmp_path, "iris", x, version=3)

    assert store_entries(tmp_path) == before
    assert (folder / "model.onnx").read_bytes() == onnx_bytes


@pytest.mark.parametrize("version", [0, -1])
def test_non_positive_version_is_refused(tmp_path, iris, classifier, version):
    x, _ = iris
    with pytest.raises(ExportError, match="positive integer"):
        export_model(classifier, tmp_path, "iris", x, version=version)
    assert store_entries(tmp_path) == []


@pytest.mark.parametrize("name", ["Iris", "", "-iris", ".tmp", "a/b", "iris v2", "x" * 65])
def test_bad_name_is_refused(tmp_path, iris, classifier, name):
    x, _ = iris
    with pytest.raises(ExportError, match="model name"):
        export_model(classifier, tmp_path, name, x)
    assert store_entries(tmp_path) == []


def test_pipeline_classifier_with_integer_classes(tmp_path, iris):
    x, y = iris
    codes = np.unique(y, return_inverse=True)[1]
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=1000))])
    model.fit(x, codes)

    folder = export_model(model, tmp_path, "codes", x)

    meta = metadata(folder)
    # Integer classes get no labels: the server answers them as numbers, as predict() does.
    assert "labels" not in meta
    assert meta["features"] == ["x0", "x1", "x2", "x3"]
    outputs = session(folder).get_outputs()
    # zipmap=False reached the final step: probabilities are a tensor, not a sequence of maps.
    assert [(o.name, o.type) for o in outputs] == [
        ("label", "tensor(int64)"),
        ("probabilities", "tensor(float)"),
    ]


def test_labels_argument_renames_classes(tmp_path, iris, classifier):
    x, _ = iris
    folder = export_model(classifier, tmp_path, "iris", x, labels=["a", "b", "c"])
    assert metadata(folder)["labels"] == ["a", "b", "c"]
    with pytest.raises(ExportError, match="2 labels given for 3 classes"):
        export_model(classifier, tmp_path, "iris", x, labels=["a", "b"])


def test_regressor_export(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3))
    y = x @ np.array([1.5, -2.0, 0.5]) + 10.0
    model = LinearRegression().fit(x, y)

    folder = export_model(model, tmp_path, "linear", x, feature_names=["a", "b", "c"])

    meta = metadata(folder)
    assert meta["task"] == "regression"
    assert meta["features"] == ["a", "b", "c"]
    assert "labels" not in meta
    (prediction,) = session(folder).run(None, {"input": x.astype(np.float32)})
    assert prediction.shape == (40, 1)
    np.testing.assert_allclose(prediction.ravel(), model.predict(x), rtol=1e-4, atol=1e-4)


def test_task_override_and_bad_task(tmp_path, iris, classifier):
    x, _ = iris
    folder = export_model(classifier, tmp_path, "iris", x, task="regression")
    assert metadata(folder)["task"] == "regression"
    with pytest.raises(ExportError, match="task must be one of"):
        export_model(classifier, tmp_path, "iris", x, task="ranking")
    # clustering is a task, but not one a classifier's answers can be read as
    with pytest.raises(ExportError, match="'clustering' does not fit LogisticRegression"):
        export_model(classifier, tmp_path, "iris", x, task="clustering")


def test_numeric_dataframe_for_plain_estimator(tmp_path, iris):
    x, y = iris
    frame = pd.DataFrame(x, columns=IRIS_FEATURES)
    model = LogisticRegression(max_iter=1000).fit(frame, y)

    # Fitted on named columns: the names come from the frame, and no feature-name warning.
    folder = export_model(model, tmp_path, "iris", frame)

    assert metadata(folder)["features"] == IRIS_FEATURES
    assert [i.name for i in session(folder).get_inputs()] == ["input"]


def test_feature_names_must_match_fitted_names(tmp_path, iris):
    x, y = iris
    model = LogisticRegression(max_iter=1000).fit(pd.DataFrame(x, columns=IRIS_FEATURES), y)
    with pytest.raises(ExportError, match="differ from those the model was fitted on"):
        export_model(model, tmp_path, "iris", x, feature_names=["a", "b", "c", "d"])


def test_column_transformer_gets_one_input_per_column(tmp_path, mixed_frame, column_pipeline):
    frame, _ = mixed_frame

    folder = export_model(column_pipeline, tmp_path, "mixed", frame, int_columns=["count"])

    sess = session(folder)
    assert [(i.name, i.type, i.shape) for i in sess.get_inputs()] == [
        ("color", "tensor(string)", [None, 1]),
        ("count", "tensor(int64)", [None, 1]),
        ("size", "tensor(float)", [None, 1]),
    ]
    meta = metadata(folder)
    assert meta["task"] == "regression"
    assert meta["features"] == ["color", "count", "size"]
    feed = {
        "color": frame[["color"]].to_numpy(dtype=object),
        "count": frame[["count"]].to_numpy(dtype=np.int64),
        "size": frame[["size"]].to_numpy(dtype=np.float32),
    }
    (prediction,) = sess.run(None, feed)
    np.testing.assert_allclose(
        prediction.ravel(), column_pipeline.predict(frame), rtol=1e-4, atol=1e-3
    )


class _TamperedSession:
    """Wraps a real session and shifts one value, as a broken converter would."""

    def __init__(self, *args, **kwargs) -> None:
        self._session = REAL_SESSION(*args, **kwargs)

    def run(self, output_names, feed):
        outputs = self._session.run(output_names, feed)
        tampered = outputs[-1].copy()
        tampered[2, 0] += 0.5
        return [*outputs[:-1], tampered]


def test_parity_failure_names_the_row_and_writes_nothing(tmp_path, monkeypatch, iris, classifier):
    x, _ = iris
    monkeypatch.setattr(export_check.ort, "InferenceSession", _TamperedSession)

    with pytest.raises(ExportError) as caught:
        export_model(classifier, tmp_path, "iris", x)

    message = str(caught.value)
    assert "parity check failed: 1 of 150 sample rows disagree" in message
    assert re.search(
        r"worst: row 2, probabilities\[setosa\]: [\d.e-]+ expected, [\d.e-]+ from", message
    )
    # Doubles do not help against a converter that is simply wrong.
    assert "float32 is the cause" not in message
    assert "try: " in message

    assert store_entries(tmp_path) == []


def test_label_mismatch_is_reported(tmp_path, monkeypatch, iris, classifier):
    x, _ = iris

    class WrongLabels(_TamperedSession):
        def run(self, output_names, feed):
            labels, probabilities = self._session.run(output_names, feed)
            labels = labels.copy()
            labels[4] = "virginica"
            return [labels, probabilities]

    monkeypatch.setattr(export_check.ort, "InferenceSession", WrongLabels)
    with pytest.raises(
        ExportError, match="worst: row 4, prediction: 'setosa' expected, 'virginica' from ONNX"
    ):
        export_model(classifier, tmp_path, "iris", x)
    assert store_entries(tmp_path) == []


def test_failed_write_leaves_no_staged_folder(tmp_path, monkeypatch, iris, classifier):
    x, _ = iris
    (tmp_path / "iris").mkdir()
    write_synced = writer._write_synced

    def fail_on_metadata(path: Path, data: bytes) -> None:
        write_synced(path, data)  # the staged folder now really holds a file
        if path.name == "metadata.json":
            raise OSError("disk full")

    monkeypatch.setattr(writer, "_write_synced", fail_on_metadata)
    with pytest.raises(ExportError, match="disk full"):
        export_model(classifier, tmp_path, "iris", x)
    assert store_entries(tmp_path) == ["iris"]


def test_failed_write_removes_the_model_folder_it_created(tmp_path, monkeypatch, iris, classifier):
    x, _ = iris

    def refuse(path: Path, data: bytes) -> None:
        raise OSError("read-only file system")

    monkeypatch.setattr(writer, "_write_synced", refuse)
    with pytest.raises(ExportError, match="read-only"):
        export_model(classifier, tmp_path, "iris", x)
    assert store_entries(tmp_path) == []


def test_cli_exports_joblib_and_csv(tmp_path, capsys, iris, classifier):
    x, _ = iris
    model_file = tmp_path / "model.joblib"
    joblib.dump(classifier, model_file)
    sample = tmp_path / "rows.csv"
    pd.DataFrame(x[:20], columns=IRIS_FEATURES).to_csv(sample, index=False)
    store = tmp_path / "store"

    code = main(
        [
            str(model_file),
            "--name",
            "iris",
            "--sample",
            str(sample),
            "--store",
            str(store),
            "--version",
            "4",
            "--description",
            "from the CLI",
        ]
    )

    assert code == 0
    assert capsys.readouterr().out.strip() == str(store / "iris" / "4")
    meta = metadata(store / "iris" / "4")
    assert meta["features"] == IRIS_FEATURES
    assert meta["labels"] == SPECIES
    assert meta["description"] == "from the CLI"


def test_cli_column_transformer_pipeline(tmp_path, capsys, mixed_frame, column_pipeline):
    frame, _ = mixed_frame
    model_file = tmp_path / "pipe.joblib"
    joblib.dump(column_pipeline, model_file)
    sample = tmp_path / "rows.csv"
    frame.to_csv(sample, index=False)
    store = tmp_path / "store"

    assert (
        main([str(model_file), "--name", "mixed", "--sample", str(sample), "--store", str(store)])
        == 0
    )

    # Whole numbers in the CSV do not make an integer input: the model was fitted on numbers.
    inputs = session(store / "mixed" / "1").get_inputs()
    assert [i.type for i in inputs] == ["tensor(string)", "tensor(float)", "tensor(float)"]
    args = [str(model_file), "--name", "mixed", "--sample", str(sample), "--store", str(store)]
    assert main([*args, "--int-columns", "count"]) == 0
    inputs = session(store / "mixed" / "2").get_inputs()
    assert [i.type for i in inputs] == ["tensor(string)", "tensor(int64)", "tensor(float)"]


def test_cli_mismatching_csv_fails(tmp_path, capsys, iris, classifier):
    x, _ = iris
    model_file = tmp_path / "model.joblib"
    joblib.dump(classifier, model_file)
    sample = tmp_path / "rows.csv"
    pd.DataFrame(x[:5, :3], columns=IRIS_FEATURES[:3]).to_csv(sample, index=False)
    store = tmp_path / "store"

    code = main([str(model_file), "--name", "iris", "--sample", str(sample), "--store", str(store)])

    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "3 columns" in err
    assert not store.exists()


def test_cli_missing_model_file_fails(tmp_path, capsys):
    sample = tmp_path / "rows.csv"
    sample.write_text("a,b\n1,2\n")
    code = main([str(tmp_path / "nope.joblib"), "--name", "x", "--sample", str(sample)])
    assert code == 1
    assert capsys.readouterr().err.startswith("error: cannot load")
