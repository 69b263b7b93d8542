"""Classifiers answer in one vocabulary: classes read from the graph, named by metadata labels."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_factories import fitted_classifier, iris_rows, write_classifier, write_graph

from ml.config import ModelConfig
from ml.graph import read_classes
from ml.model import LoadedModel, ModelLoadError, load_model
from ml.outputs import Predictions, Vocabulary, VocabularyError
from ml.signature import OutputKind

ESTIMATORS = ["forest", "logistic", "mlp", "knn", "naive_bayes"]
# Rows of each iris class, so every class is predicted.
ROWS = [*iris_rows(150)[::25]]


def load(folder: Path) -> LoadedModel:
    return load_model("m", 1, folder, ModelConfig())


def predict(model: LoadedModel, rows: list[Any]) -> Predictions:
    return asyncio.run(model.predict(rows, ("instances",)))


def with_labels(labels: list[str] | None) -> dict[str, Any] | None:
    return None if labels is None else {"labels": labels}


def assert_one_vocabulary(result: Predictions) -> None:
    assert result.predictions is not None and result.probabilities is not None
    for prediction, probabilities in zip(result.predictions, result.probabilities, strict=True):
        assert str(prediction) in probabilities
        assert max(probabilities, key=probabilities.__getitem__) == str(prediction)


# -- reading the graph -------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("classes", [(3, 7, 9), ("b", "a", "c"), (0, 1), ("no", "yes")])
@pytest.mark.parametrize("zipmap", [False, True])
def test_classes_read_from_every_kind_of_graph(
    tmp_path: Path, estimator: str, classes: tuple[Any, ...], zipmap: bool
) -> None:
    folder = write_classifier(tmp_path, estimator, classes, zipmap=zipmap)
    label_output = "output_label" if zipmap else "label"
    got = read_classes(folder / "model.onnx", label_output, len(classes))
    assert got == tuple(fitted_classifier(estimator, classes).classes_.tolist())


def test_a_graph_without_a_classifier_declares_no_classes(tmp_path: Path) -> None:
    folder = argmax_classifier(tmp_path)
    assert read_classes(folder / "model.onnx", "label", 3) is None


# -- the vocabulary rule -----------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("zipmap", [False, True])
def test_integer_classes_with_labels_answer_names(
    tmp_path: Path, estimator: str, zipmap: bool
) -> None:
    labels = ["setosa", "versicolor", "virginica"]
    model = load(
        write_classifier(
            tmp_path, estimator, (0, 1, 2), zipmap=zipmap, metadata=with_labels(labels)
        )
    )
    assert model.labels == tuple(labels)
    result = predict(model, ROWS)
    sklearn = fitted_classifier(estimator, (0, 1, 2)).predict(np.asarray(ROWS, np.float32))
    assert result.predictions == [labels[c] for c in sklearn]
    assert result.probabilities is not None
    assert [list(p) for p in result.probabilities] == [labels] * len(ROWS)
    assert_one_vocabulary(result)


@pytest.mark.parametrize("zipmap", [False, True])
def test_classes_that_are_not_0_to_k_are_named_by_position(tmp_path: Path, zipmap: bool) -> None:
    model = load(
        write_classifier(
            tmp_path, "forest", (3, 7, 9), zipmap=zipmap, metadata=with_labels(["a", "b", "c"])
        )
    )
    result = predict(model, ROWS)
    sklearn = fitted_classifier("forest", (3, 7, 9)).predict(np.asarray(ROWS, np.float32))
    assert result.predictions == [{3: "a", 7: "b", 9: "c"}[c] for c in sklearn]
    assert "b" in result.predictions  # a row of class 7
    assert_one_vocabulary(result)


@pytest.mark.parametrize("zipmap", [False, True])
def test_integer_classes_without_labels_answer_numbers_keyed_by_their_decimal_strings(
    tmp_path: Path, zipmap: bool
) -> None:
    model = load(write_classifier(tmp_path, "forest", (3, 7, 9), zipmap=zipmap))
    assert model.labels == ("3", "7", "9")
    result = predict(model, ROWS)
    assert result.predictions is not None
    assert set(result.predictions) == {3, 7, 9}
    assert all(type(p) is int for p in result.predictions)
    assert result.probabilities is not None
    assert list(result.probabilities[0]) == ["3", "7", "9"]
    assert_one_vocabulary(result)


@pytest.mark.parametrize("estimator", ["forest", "mlp"])
def test_string_classes_without_metadata_answer_as_they_are(tmp_path: Path, estimator: str) -> None:
    model = load(write_classifier(tmp_path, estimator, ("b", "a", "c")))
    assert model.labels == ("a", "b", "c")  # scikit-learn sorts its classes
    result = predict(model, ROWS)
    sklearn = fitted_classifier(estimator, ("b", "a", "c")).predict(np.asarray(ROWS, np.float32))
    assert result.predictions == sklearn.tolist()
    assert_one_vocabulary(result)


@pytest.mark.parametrize("classes", [(0, 1), ("no", "yes")])
@pytest.mark.parametrize("zipmap", [False, True])
def test_binary_classifier(tmp_path: Path, classes: tuple[Any, ...], zipmap: bool) -> None:
    model = load(
        write_classifier(
            tmp_path,
            "logistic",
            classes,
            zipmap=zipmap,
            metadata=with_labels(["negative", "positive"]),
        )
    )
    result = predict(model, ROWS)
    assert result.predictions is not None and set(result.predictions) == {"negative", "positive"}
    assert result.probabilities is not None and list(result.probabilities[0]) == [
        "negative",
        "positive",
    ]
    assert_one_vocabulary(result)


@pytest.mark.parametrize("zipmap", [False, True])
@pytest.mark.parametrize("labels", [["a", "b"], ["a", "b", "c", "d"]])
def test_labels_of_the_wrong_length_fail_the_version(
    tmp_path: Path, zipmap: bool, labels: list[str]
) -> None:
    folder = write_classifier(
        tmp_path, "forest", (3, 7, 9), zipmap=zipmap, metadata=with_labels(labels)
    )
    with pytest.raises(
        ModelLoadError,
        match=rf"lists {len(labels)} labels but the model has 3 "
        r"classes \[3, 7, 9\]",
    ):
        load(folder)


def test_repeated_labels_fail_the_version(tmp_path: Path) -> None:
    folder = write_classifier(tmp_path, "forest", (3, 7, 9), metadata=with_labels(["a", "a", "b"]))
    with pytest.raises(ModelLoadError, match="not distinct"):
        load(folder)


def test_hand_built_int_classifier_keys_columns_by_index(tmp_path: Path) -> None:
    model = load(argmax_classifier(tmp_path, labels=["low", "mid", "high"]))
    assert model.signature.output_kind is OutputKind.CLASSIFIER
    result = predict(model, [[0.1, 0.9, 0.0], [5.0, 0.0, 1.0]])
    assert result.predictions == ["mid", "low"]
    assert_one_vocabulary(result)


def test_hand_built_string_classifier_without_classes_answers_outputs(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [
            helper.make_node("ArgMax", ["x"], ["index"], axis=1, keepdims=0),
            helper.make_node("Cast", ["index"], ["label"], to=TensorProto.STRING),
            helper.make_node("Softmax", ["x"], ["probabilities"], axis=1),
        ],
        "strings",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [
            helper.make_tensor_value_info("label", TensorProto.STRING, ["N"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2]),
        ],
    )
    model = load(write_graph(tmp_path, graph))
    assert model.signature.output_kind is OutputKind.RAW
    result = predict(model, [[0.0, 1.0]])
    assert result.outputs is not None and result.outputs["label"] == ["1"]


def test_vocabulary_rejects_a_class_the_graph_did_not_declare() -> None:
    vocabulary = Vocabulary.build((3, 7, 9), ["a", "b", "c"])
    assert vocabulary.name([9, 3]) == ["c", "a"]
    with pytest.raises(VocabularyError, match="predicted class 5"):
        vocabulary.name([5])


def test_vocabulary_without_renaming_costs_nothing() -> None:
    assert Vocabulary.build(("a", "b"), ["a", "b"]).names is None
    assert Vocabulary.build((0, 1), None).names is None
    assert Vocabulary.build((0, 1), ["0", "1"]).names == {0: "0", 1: "1"}


def test_a_client_may_name_a_class_or_give_its_graph_value() -> None:
    vocabulary = Vocabulary.build((10, 20, 30), ["a", "b", "c"])
    assert [vocabulary.answered(v) for v in (30, "30", "c", 10, "a")] == ["c", "c", "c", "a", "a"]
    assert [vocabulary.answered(v) for v in (40, "40", "C", 30.0, True, 0)] == [None] * 6
    unnamed = Vocabulary.build((3, 7, 9), None)  # answered as the numbers themselves
    assert [unnamed.answered(v) for v in (7, "7", 7.0, "x")] == [7, 7, None, None]
    words = Vocabulary.build(("no", "yes"), None)
    assert [words.answered(v) for v in ("yes", 1, 0, False)] == ["yes", None, None, None]


def test_a_name_wins_over_a_class_value_spelled_the_same() -> None:
    # Class 0 is called "1" and class 1 "0": a string is read as a name, an integer as a value.
    vocabulary = Vocabulary.build((0, 1), ["1", "0"])
    assert [vocabulary.answered(v) for v in ("1", "0", 1, 0)] == ["1", "0", "0", "1"]
    # Integer labels are answered as strings; their integers still name them.
    numbered = Vocabulary.build((10, 20), [1, 2])
    assert [numbered.answered(v) for v in (1, "2", 20)] == ["1", "2", "2"]


# -- helpers -----------------------------------------------------------------------------------


def argmax_classifier(folder: Path, labels: list[str] | None = None) -> Path:
    """Hand-built: the label is the index of the largest input, probabilities its softmax."""
    graph = helper.make_graph(
        [
            helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0),
            helper.make_node("Softmax", ["x"], ["probabilities"], axis=1),
        ],
        "argmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3]),
        ],
    )
    return write_graph(folder, graph, with_labels(labels))
