"""ml.export for answers beyond one class or one number: several regression targets, anomaly
detection, clustering, text pipelines, and the models it refuses with a readable message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.cluster import AgglomerativeClustering, KMeans, MiniBatchKMeans
from sklearn.datasets import load_iris, load_linnerud, load_wine
from sklearn.ensemble import IsolationForest, RandomForestRegressor
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.gaussian_process import GaussianProcessClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multioutput import MultiOutputClassifier, MultiOutputRegressor
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from ml.cli.export import main
from ml.export import ExportError, export_model

REPO = Path(__file__).resolve().parents[2]


def read_json(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text())


def run_onnx(folder: Path, feed: dict) -> list:
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


@pytest.fixture(scope="module")
def linnerud() -> tuple[pd.DataFrame, pd.DataFrame]:
    data = load_linnerud(as_frame=True)
    return data.data, data.target


@pytest.mark.parametrize(
    "model",
    [Ridge(), RandomForestRegressor(8, random_state=0), MultiOutputRegressor(Ridge())],
    ids=["ridge", "forest", "multi-output"],
)
def test_several_targets_answer_each_target(tmp_path, linnerud, model):
    x, y = linnerud
    model.fit(x, y)
    folder = export_model(model, tmp_path, "body", x, targets=list(y.columns), atol=1e-3)

    meta = read_json(folder, "metadata.json")
    assert meta["task"] == "regression"
    assert meta["targets"] == ["Weight", "Waist", "Pulse"]
    samples = read_json(folder, "samples.json")
    assert len(samples["instances"]) == len(x)
    rows = samples["expected"]["predictions"]
    assert all(list(row) == ["Weight", "Waist", "Pulse"] for row in rows)
    got = np.array([list(row.values()) for row in rows])
    np.testing.assert_allclose(got, model.predict(x), rtol=1e-4, atol=1e-3)
    # The graph declares the width it answers, so onnxruntime has nothing to warn about.
    output = ort.InferenceSession(str(folder / "model.onnx")).get_outputs()[0]
    assert output.shape[1] == 3


def test_several_targets_default_to_y0_y1(tmp_path, linnerud):
    x, y = linnerud
    folder = export_model(Ridge().fit(x.to_numpy(), y.to_numpy()), tmp_path, "body", x.to_numpy())
    assert read_json(folder, "metadata.json")["targets"] == ["y0", "y1", "y2"]
    with pytest.raises(ExportError, match="2 targets given, the model predicts 3"):
        export_model(Ridge().fit(x, y), tmp_path, "body", x, targets=["a", "b"])


def test_one_target_has_no_targets_key(tmp_path, linnerud):
    x, y = linnerud
    folder = export_model(Ridge().fit(x, y["Pulse"]), tmp_path, "pulse", x, atol=1e-3)
    meta = read_json(folder, "metadata.json")
    assert "targets" not in meta
    assert isinstance(read_json(folder, "samples.json")["expected"]["predictions"][0], float)


def test_multi_output_classifier_is_refused_readably(tmp_path):
    x, y = load_iris(return_X_y=True)
    model = MultiOutputClassifier(LogisticRegression(max_iter=500)).fit(x, np.c_[y, y > 1])
    with pytest.raises(ExportError) as caught:
        export_model(model, tmp_path, "two", x)
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("MultiOutputClassifier predicts several targets of classes")
    assert lines[1] == "  try: export one classifier per target"
    assert not (tmp_path / "two").exists()


@pytest.fixture(scope="module")
def wine() -> np.ndarray:
    return load_wine().data


@pytest.mark.parametrize(
    "model",
    [
        IsolationForest(n_estimators=20, random_state=0),
        Pipeline([("scale", StandardScaler()), ("svm", OneClassSVM(nu=0.1))]),
        Pipeline([("scale", StandardScaler()), ("lof", LocalOutlierFactor(novelty=True))]),
    ],
    ids=["isolation-forest", "one-class-svm", "local-outlier-factor"],
)
def test_anomaly_detectors_answer_decision_and_score(tmp_path, wine, model):
    model.fit(wine)
    folder = export_model(model, tmp_path, "odd", wine, atol=1e-4)

    assert read_json(folder, "metadata.json")["task"] == "anomaly_detection"
    expected = read_json(folder, "samples.json")["expected"]
    rows = np.linspace(0, len(wine) - 1, 32).round().astype(int)
    assert expected["predictions"] == model.predict(wine[rows]).tolist()
    assert expected["outliers"] == [p == -1 for p in model.predict(wine[rows])]
    np.testing.assert_allclose(
        expected["scores"], model.decision_function(wine[rows]), rtol=1e-4, atol=1e-4
    )
    assert -1 in expected["predictions"] and 1 in expected["predictions"]


def test_local_outlier_factor_on_tied_neighbours_is_refused(tmp_path):
    # iris repeats rows: neighbours at equal distances are picked differently by the graph.
    x, _ = load_iris(return_X_y=True)
    model = LocalOutlierFactor(novelty=True).fit(x)
    with pytest.raises(ExportError, match="parity check failed"):
        export_model(model, tmp_path, "lof", x)


@pytest.mark.parametrize(
    "model",
    [KMeans(3, n_init=3, random_state=0), MiniBatchKMeans(3, n_init=3, random_state=0)],
    ids=["kmeans", "minibatch-kmeans"],
)
def test_clusterers_answer_cluster_and_distances(tmp_path, wine, model):
    model.fit(wine)
    folder = export_model(model, tmp_path, "groups", wine, atol=1e-2)

    assert read_json(folder, "metadata.json")["task"] == "clustering"
    expected = read_json(folder, "samples.json")["expected"]
    rows = np.linspace(0, len(wine) - 1, 32).round().astype(int)
    assert expected["predictions"] == model.predict(wine[rows]).tolist()
    assert all(list(d) == ["0", "1", "2"] for d in expected["distances"])
    distances = np.array([list(d.values()) for d in expected["distances"]])
    np.testing.assert_allclose(distances, model.transform(wine[rows]), rtol=1e-4, atol=1e-2)


def test_clusterer_without_predict_is_refused(tmp_path, wine):
    with pytest.raises(ExportError, match="cannot answer new rows"):
        export_model(AgglomerativeClustering(3).fit(wine), tmp_path, "agg", wine)


REVIEWS = [
    "The cat sat on the mat",
    "a DOG barked loudly all night",
    "cats and dogs, together at last",
    "The Dog sat; the cat left",
    "loud cat, quiet dog",
    "Nothing about pets here",
] * 4
LIKED = [1, 0, 1, 0, 0, 1] * 4


@pytest.mark.parametrize("vectorizer", [TfidfVectorizer, CountVectorizer])
def test_text_pipeline_takes_one_string_column(tmp_path, vectorizer):
    frame = pd.DataFrame({"review": REVIEWS})
    model = Pipeline([("words", vectorizer()), ("model", LogisticRegression())])
    model.fit(frame["review"], LIKED)
    folder = export_model(model, tmp_path, "reviews", frame)

    (given,) = ort.InferenceSession(str(folder / "model.onnx")).get_inputs()
    assert (given.type, given.shape) == ("tensor(string)", [None, 1])
    assert read_json(folder, "metadata.json")["features"] == ["review"]
    samples = read_json(folder, "samples.json")
    assert samples["instances"][:2] == [[REVIEWS[0]], [REVIEWS[1]]]
    probabilities = np.array([list(p.values()) for p in samples["expected"]["probabilities"]])
    np.testing.assert_allclose(probabilities, model.predict_proba(REVIEWS), rtol=1e-4, atol=1e-5)
    normalizers = [
        n
        for n in onnx.load(str(folder / "model.onnx")).graph.node
        if n.op_type == "StringNormalizer"
    ]
    assert normalizers
    for node in normalizers:
        (locale,) = [a.s.decode() for a in node.attribute if a.name == "locale"]
        assert locale == "C"


def test_text_model_loads_without_any_locale_installed(tmp_path):
    """Exported and loaded in a process whose only locale is C, as on a slim image."""
    script = (
        "import sys, numpy as np, onnxruntime as ort\n"
        "from sklearn.feature_extraction.text import TfidfVectorizer\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from sklearn.pipeline import Pipeline\n"
        "from ml.export import export_model\n"
        f"docs, liked = {REVIEWS!r}, {LIKED!r}\n"
        "model = Pipeline([('v', TfidfVectorizer()), ('m', LogisticRegression())])\n"
        "model.fit(docs, liked)\n"
        "folder = export_model(model, sys.argv[1], 'text', docs)\n"
        "session = ort.InferenceSession(str(folder / 'model.onnx'))\n"
        "feed = {'input': np.array(docs, dtype=object).reshape(-1, 1)}\n"
        "labels, _ = session.run(None, feed)\n"
        "assert labels.tolist() == model.predict(docs).tolist()\n"
        "print('loaded')\n"
    )
    env = {**os.environ, "LANG": "C", "LC_ALL": "C", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded"


def test_estimator_onnxruntime_cannot_run_is_named(tmp_path):
    x, y = load_iris(return_X_y=True)
    x, y = x[:100], y[:100]  # two classes: skl2onnx converts only binary ones
    model = GaussianProcessClassifier().fit(x[::2], y[::2])
    with pytest.raises(ExportError) as caught:
        export_model(model, tmp_path, "gp", x)
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("GaussianProcessClassifier converts, but onnxruntime cannot run")
    assert "the operator com.microsoft:Solve, which onnxruntime" in lines[0]
    assert lines[1].startswith("  try: replace GaussianProcessClassifier")
    assert len(lines) == 2
    assert not (tmp_path / "gp").exists()


def test_cli_targets_and_text(tmp_path, linnerud, capsys):
    x, y = linnerud
    model_file = tmp_path / "body.joblib"
    joblib.dump(Ridge().fit(x, y), model_file)
    sample = tmp_path / "rows.csv"
    x.to_csv(sample, index=False)
    store = tmp_path / "store"
    args = [str(model_file), "--name", "body", "--sample", str(sample), "--store", str(store)]
    assert main([*args, "--targets", "weight,waist,pulse"]) == 0
    assert read_json(store / "body" / "1", "metadata.json")["targets"] == [
        "weight",
        "waist",
        "pulse",
    ]

    joblib.dump(
        Pipeline([("v", CountVectorizer()), ("m", LogisticRegression())]).fit(REVIEWS, LIKED),
        model_file,
    )
    pd.DataFrame({"review": REVIEWS}).to_csv(sample, index=False)
    assert (
        main([str(model_file), "--name", "text", "--sample", str(sample), "--store", str(store)])
        == 0
    )
    assert read_json(store / "text" / "1", "metadata.json")["features"] == ["review"]
