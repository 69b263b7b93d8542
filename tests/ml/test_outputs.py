"""ml.outputs: raw session outputs read as the answer of each kind of model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml.outputs import Predictions, decode
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
    assert answer == Predictions(
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
