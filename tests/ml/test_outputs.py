"""ml.outputs: raw session outputs read as the answer of each kind of model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn_models import wine_rows

from ml.config import ModelConfig
from ml.model import load_model
from ml.outputs import ScoredPredictions, decode
from ml.signature import OutputKind, Signature, derive_signature


@dataclass(frozen=True)
class Arg:
    """Stands in for onnxruntime's NodeArg."""

    name: str
    type: str
    shape: Sequence[Any]


FLOAT_IN = Arg("input", "tensor(float)", [None, 2])


def signature(outputs: list[Arg], metadata: dict[str, Any]) -> Signature:
    return derive_signature([FLOAT_IN], outputs, metadata, "skl2onnx")


def test_anomaly_detector_answers_label_outlier_and_score() -> None:
    detector = signature(
        [Arg("label", "tensor(int64)", [None, 1]), Arg("scores", "tensor(float)", [None, 1])], {}
    )
    raw = [np.array([[1], [-1], [1]]), np.array([[0.25], [-0.5], [0.0]], dtype=np.float32)]
    answer = decode(detector, None, raw)
    assert answer == ScoredPredictions(
        predictions=[1, -1, 1], outliers=[False, True, False], scores=[0.25, -0.5, 0.0]
    )
    assert answer.decided and answer.probabilities is None


def test_clustering_answers_cluster_and_distances_by_index() -> None:
    clusters = signature(
        [Arg("label", "tensor(int64)", [None]), Arg("scores", "tensor(float)", [None, 3])], {}
    )
    distances = np.array([[1.0, 0.5, 2.0], [0.25, 3.0, 1.0]], dtype=np.float32)
    answer = decode(clusters, None, [np.array([1, 0]), distances])
    assert answer.predictions == [1, 0]
    assert answer.distances == [{"0": 1.0, "1": 0.5, "2": 2.0}, {"0": 0.25, "1": 3.0, "2": 1.0}]
    assert answer.decided and answer.outliers is None


def test_several_targets_answer_one_object_per_row() -> None:
    regressor = signature([Arg("variable", "tensor(float)", [None, 2])], {"targets": ["a", "b"]})
    assert regressor.output_kind is OutputKind.MULTI_REGRESSOR
    answer = decode(regressor, None, [np.array([[1.5, -2.0], [0.0, 4.25]], dtype=np.float32)])
    assert answer.predictions == [{"a": 1.5, "b": -2.0}, {"a": 0.0, "b": 4.25}]
    assert not answer.decided


# -- as skl2onnx converts them -------------------------------------------------------------------


def _estimator(name: str) -> Any:
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor
    from sklearn.svm import OneClassSVM

    return {
        "IsolationForest": lambda: IsolationForest(n_estimators=30, random_state=1),
        "OneClassSVM": lambda: OneClassSVM(nu=0.1),
        "LocalOutlierFactor": lambda: LocalOutlierFactor(novelty=True),
        "KMeans": lambda: KMeans(n_clusters=4, n_init=2, random_state=1),
        "MiniBatchKMeans": lambda: MiniBatchKMeans(n_clusters=2, n_init=2, random_state=1),
    }[name]()


@pytest.mark.parametrize(
    "name", ["IsolationForest", "OneClassSVM", "LocalOutlierFactor", "KMeans", "MiniBatchKMeans"]
)
def test_skl2onnx_detectors_and_clusterers_answer_as_the_library(tmp_path: Path, name: str) -> None:
    from skl2onnx import to_onnx

    # Wine, not iris: iris repeats rows, and a tie between neighbours at equal distances may
    # fall either way in float32, moving LocalOutlierFactor's score (the conversion's doing).
    x = wine_rows()
    estimator = _estimator(name).fit(x)
    folder = tmp_path / "1"
    folder.mkdir()
    onx = to_onnx(estimator, x[:1], target_opset={"": 18, "ai.onnx.ml": 3})
    (folder / "model.onnx").write_bytes(onx.SerializeToString())

    model = load_model("m", 1, folder, ModelConfig())  # no metadata.json: read from the graph
    answer = model.answer(x.tolist(), ("instances",))

    labels = estimator.predict(x).tolist()
    assert answer.predictions == labels
    assert answer.probabilities is None
    if name.endswith("KMeans"):
        assert model.signature.task == "clustering"
        distances = [[row[str(i)] for i in range(len(row))] for row in answer.distances or []]
        np.testing.assert_allclose(distances, estimator.transform(x), rtol=1e-4, atol=1e-4)
    else:
        assert model.signature.task == "anomaly_detection"
        assert answer.outliers == [label == -1 for label in labels]
        np.testing.assert_allclose(
            answer.scores or [], estimator.decision_function(x), rtol=1e-4, atol=1e-4
        )
