"""ml.signature: input layouts, features and output kinds derived from real and fake graphs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnx_factories import (
    COLUMNS,
    DIABETES_FEATURES,
    IRIS_FEATURES,
    write_columns_pipeline,
    write_double_input_model,
    write_int64_input_model,
    write_iris_classifier,
    write_raw_model,
    write_regressor,
)

from ml.signature import (
    InputLayout,
    OutputKind,
    Signature,
    SignatureError,
    TensorInfo,
    derive_signature,
)


@dataclass(frozen=True)
class Arg:
    """Stands in for onnxruntime's NodeArg."""

    name: str
    type: str
    shape: Sequence[Any]


FLOAT_IN = Arg("input", "tensor(float)", [None, 4])
LABEL = Arg("label", "tensor(string)", [None])
PROBS = Arg("probabilities", "tensor(float)", [None, 3])
ZIPMAP = Arg("output_probability", "seq(map(string,tensor(float)))", [])
VALUE = Arg("variable", "tensor(float)", [None, 1])


def from_folder(folder: Path) -> Signature:
    """The signature of a factory model, read through a real onnxruntime session."""
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    meta_file = folder / "metadata.json"
    metadata = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    producer = session.get_modelmeta().producer_name
    return derive_signature(session.get_inputs(), session.get_outputs(), metadata, producer)


def dtypes(signature: Signature) -> list[tuple[str, np.dtype, str]]:
    return [(f.name, f.dtype, f.json_type) for f in signature.features]


# -- real models -------------------------------------------------------------------------------


def test_iris_classifier(tmp_path: Path) -> None:
    signature = from_folder(write_iris_classifier(tmp_path))
    assert signature.layout is InputLayout.TENSOR
    assert signature.feature_names == IRIS_FEATURES
    assert {f.dtype for f in signature.features} == {np.dtype(np.float32)}
    assert {f.json_type for f in signature.features} == {"number"}
    assert signature.inputs == (TensorInfo("input", "tensor(float)", (None, 4)),)
    assert signature.output_kind is OutputKind.CLASSIFIER
    assert signature.task == "classification"
    assert signature.fixed_batch_size is None
    assert [o.name for o in signature.outputs] == ["label", "probabilities"]


def test_equal_signatures_hash_alike_and_a_changed_one_differs(tmp_path: Path) -> None:
    signature = from_folder(write_iris_classifier(tmp_path / "a"))
    again = from_folder(write_iris_classifier(tmp_path / "b"))
    assert signature == again and hash(signature) == hash(again)
    assert {signature: 1}[again] == 1  # a cache keyed by one finds the other
    changed = replace(signature, task="regression", missing_values=True)
    assert changed != signature and hash(changed) != hash(signature)
    assert hash(replace(changed, task="classification", missing_values=False)) == hash(signature)


def test_iris_without_metadata_gets_generated_names(tmp_path: Path) -> None:
    signature = from_folder(write_iris_classifier(tmp_path, metadata=False))
    assert signature.feature_names == ("x0", "x1", "x2", "x3")
    assert signature.output_kind is OutputKind.CLASSIFIER
    assert signature.task == "classification"  # implied by the outputs


def test_iris_with_zipmap(tmp_path: Path) -> None:
    signature = from_folder(write_iris_classifier(tmp_path, zipmap=True))
    assert signature.output_kind is OutputKind.CLASSIFIER_ZIPMAP
    assert signature.task == "classification"


def test_iris_zipmap_without_metadata(tmp_path: Path) -> None:
    signature = from_folder(write_iris_classifier(tmp_path, zipmap=True, metadata=False))
    assert signature.output_kind is OutputKind.CLASSIFIER_ZIPMAP


def test_regressor(tmp_path: Path) -> None:
    signature = from_folder(write_regressor(tmp_path))
    assert signature.layout is InputLayout.TENSOR
    assert signature.feature_names == DIABETES_FEATURES
    assert signature.output_kind is OutputKind.REGRESSOR
    assert signature.task == "regression"


def test_regressor_without_metadata_is_still_a_regressor(tmp_path: Path) -> None:
    signature = from_folder(write_regressor(tmp_path, metadata=False))
    assert signature.output_kind is OutputKind.REGRESSOR
    assert signature.task == "regression"
    assert signature.feature_names == tuple(f"x{i}" for i in range(10))


def test_columns_classifier(tmp_path: Path) -> None:
    signature = from_folder(write_columns_pipeline(tmp_path))
    assert signature.layout is InputLayout.COLUMNS
    assert dtypes(signature) == [
        ("color", np.dtype(object), "string"),
        ("size", np.dtype(np.float32), "number"),
        ("count", np.dtype(np.int64), "integer"),
    ]
    assert [i.shape for i in signature.inputs] == [(None, 1)] * 3
    assert signature.output_kind is OutputKind.CLASSIFIER


def test_columns_regressor_without_metadata(tmp_path: Path) -> None:
    signature = from_folder(write_columns_pipeline(tmp_path, task="regression", metadata=False))
    assert signature.layout is InputLayout.COLUMNS
    assert signature.feature_names == COLUMNS  # the input names
    assert signature.output_kind is OutputKind.REGRESSOR


def test_raw_model(tmp_path: Path) -> None:
    signature = from_folder(write_raw_model(tmp_path))
    assert signature.output_kind is OutputKind.RAW
    assert signature.task is None
    assert signature.feature_names == ("x0", "x1", "x2")
    assert signature.inputs == (TensorInfo("x", "tensor(float)", (None, 3)),)  # "N" is dynamic
    assert [o.name for o in signature.outputs] == ["y", "s"]
    assert signature.fixed_batch_size is None


def test_fixed_batch_dimension(tmp_path: Path) -> None:
    signature = from_folder(write_raw_model(tmp_path, batch=1))
    assert signature.fixed_batch_size == 1
    assert signature.inputs[0].shape == (1, 3)


def test_dynamic_feature_dimension_needs_metadata(tmp_path: Path) -> None:
    with pytest.raises(SignatureError, match="dynamic feature dimension"):
        from_folder(write_raw_model(tmp_path / "a", features=None))
    folder = write_raw_model(tmp_path / "b", features=None, metadata={"features": ["p", "q"]})
    assert from_folder(folder).feature_names == ("p", "q")


def test_double_input(tmp_path: Path) -> None:
    signature = from_folder(write_double_input_model(tmp_path))
    assert dtypes(signature) == [
        ("x0", np.dtype(np.float64), "number"),
        ("x1", np.dtype(np.float64), "number"),
    ]
    # Hand-built: one [N, 1] output from a producer that is not skl2onnx is not a regressor.
    assert signature.output_kind is OutputKind.RAW


# -- regressors, recognised for sure -----------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "producer", "kind"),
    [
        ({}, "skl2onnx", OutputKind.REGRESSOR),
        ({}, "", OutputKind.RAW),
        ({}, "pytorch", OutputKind.RAW),
        ({"task": "regression"}, "", OutputKind.REGRESSOR),
        ({"task": "regression"}, "pytorch", OutputKind.REGRESSOR),
    ],
)
def test_one_float_output_is_a_regressor_by_task_or_producer(
    metadata: dict[str, Any], producer: str, kind: OutputKind
) -> None:
    assert derive_signature([FLOAT_IN], [VALUE], metadata, producer).output_kind is kind


def test_skl2onnx_output_wider_than_one_is_not_a_regressor_without_task() -> None:
    wide = Arg("variable", "tensor(float)", [None, 2])
    assert derive_signature([FLOAT_IN], [wide], {}, "skl2onnx").output_kind is OutputKind.RAW
    assert (
        derive_signature([FLOAT_IN], [wide], {"task": "regression"}, "").output_kind
        is OutputKind.REGRESSOR
    )


def test_int64_input(tmp_path: Path) -> None:
    signature = from_folder(write_int64_input_model(tmp_path))
    assert dtypes(signature) == [
        ("x0", np.dtype(np.int64), "integer"),
        ("x1", np.dtype(np.int64), "integer"),
    ]


# -- metadata against the graph ----------------------------------------------------------------


def test_metadata_feature_count_mismatch() -> None:
    with pytest.raises(
        SignatureError, match="lists 3 features but the model's input 'input' takes 4"
    ):
        derive_signature([FLOAT_IN], [LABEL, PROBS], {"features": ["a", "b", "c"]})


def test_unknown_task() -> None:
    with pytest.raises(SignatureError, match="task 'ranking' is not one of classification"):
        derive_signature([FLOAT_IN], [VALUE], {"task": "ranking"})


def test_columns_metadata_must_name_the_inputs_in_order() -> None:
    inputs = [Arg("a", "tensor(float)", [None, 1]), Arg("b", "tensor(int64)", [None, 1])]
    assert derive_signature(inputs, [VALUE], {"features": ["a", "b"]}).feature_names == ("a", "b")
    with pytest.raises(SignatureError, match="name the model's inputs in order: a, b"):
        derive_signature(inputs, [VALUE], {"features": ["b", "a"]})


# -- fake NodeArgs: edge cases -----------------------------------------------------------------


def test_no_inputs() -> None:
    with pytest.raises(SignatureError, match="no inputs"):
        derive_signature([], [VALUE], {})


@pytest.mark.parametrize("shape", [[None], [None, 4, 2], [], None])
def test_inputs_must_be_2d(shape: Any) -> None:
    with pytest.raises(SignatureError, match="served inputs are 2-D"):
        derive_signature([Arg("input", "tensor(float)", shape)], [VALUE], {})


def test_unsupported_element_type() -> None:
    with pytest.raises(SignatureError, match=r"type tensor\(uint8\); served types are"):
        derive_signature([Arg("input", "tensor(uint8)", [None, 2])], [VALUE], {})


def test_single_string_tensor_wider_than_one_column_is_refused() -> None:
    with pytest.raises(SignatureError, match=r"a single string input must be one column \[N, 1\]"):
        derive_signature([Arg("text", "tensor(string)", [None, 3])], [VALUE], {})


def test_columns_must_be_one_wide() -> None:
    inputs = [Arg("a", "tensor(float)", [None, 1]), Arg("b", "tensor(float)", [None, 3])]
    with pytest.raises(SignatureError, match=r"'b' has shape \[None, 3\]"):
        derive_signature(inputs, [VALUE], {})


def test_columns_with_dynamic_width_are_accepted() -> None:
    inputs = [Arg("a", "tensor(float)", ["N", "W"]), Arg("b", "tensor(string)", ["N", 1])]
    signature = derive_signature(inputs, [VALUE], {})
    assert signature.layout is InputLayout.COLUMNS
    assert dtypes(signature) == [
        ("a", np.dtype(np.float32), "number"),
        ("b", np.dtype(object), "string"),
    ]


def test_inputs_must_agree_on_the_batch_dimension() -> None:
    inputs = [Arg("a", "tensor(float)", [1, 1]), Arg("b", "tensor(float)", [None, 1])]
    with pytest.raises(SignatureError, match="disagree on their batch dimension"):
        derive_signature(inputs, [VALUE], {})


def test_fixed_batch_of_columns() -> None:
    inputs = [Arg("a", "tensor(float)", [4, 1]), Arg("b", "tensor(int64)", [4, 1])]
    assert derive_signature(inputs, [VALUE], {}).fixed_batch_size == 4


@pytest.mark.parametrize("dim", [None, "N", "batch_size", 0, -1])
def test_symbolic_and_unknown_dimensions_are_dynamic(dim: Any) -> None:
    signature = derive_signature([Arg("x", "tensor(float)", [dim, 2])], [VALUE], {})
    assert signature.fixed_batch_size is None
    assert signature.inputs[0].shape == (None, 2)


@pytest.mark.parametrize(
    ("onnx_type", "dtype", "json_type"),
    [
        ("tensor(float)", np.float32, "number"),
        ("tensor(double)", np.float64, "number"),
        ("tensor(float16)", np.float16, "number"),
        ("tensor(int64)", np.int64, "integer"),
        ("tensor(int32)", np.int32, "integer"),
        ("tensor(bool)", np.bool_, "boolean"),
    ],
)
def test_tensor_element_types(onnx_type: str, dtype: Any, json_type: str) -> None:
    signature = derive_signature([Arg("x", onnx_type, [None, 2])], [VALUE], {})
    assert {(f.dtype, f.json_type) for f in signature.features} == {(np.dtype(dtype), json_type)}


# -- output kinds ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outputs", "metadata", "kind"),
    [
        ([LABEL, PROBS], {}, OutputKind.CLASSIFIER),
        ([Arg("label", "tensor(int64)", [None]), PROBS], {}, OutputKind.CLASSIFIER),
        ([Arg("label", "tensor(int64)", [None, 1]), PROBS], {}, OutputKind.CLASSIFIER),
        (
            [LABEL, Arg("p", "tensor(double)", [None, 3])],
            {"task": "classification"},
            OutputKind.CLASSIFIER,
        ),
        ([LABEL, ZIPMAP], {}, OutputKind.CLASSIFIER_ZIPMAP),
        ([Arg("label", "tensor(int64)", [None]), ZIPMAP], {}, OutputKind.CLASSIFIER_ZIPMAP),
        ([LABEL, PROBS], {"task": "regression"}, OutputKind.RAW),
        ([LABEL, Arg("p", "tensor(float)", [None])], {}, OutputKind.RAW),
        ([Arg("label", "tensor(float)", [None]), PROBS], {}, OutputKind.RAW),
        ([LABEL, PROBS, VALUE], {}, OutputKind.RAW),
        ([VALUE], {}, OutputKind.RAW),  # no producer: see the regressor tests below
        ([Arg("v", "tensor(double)", [None])], {"task": "regression"}, OutputKind.REGRESSOR),
        ([Arg("v", "tensor(float)", [None, 3])], {}, OutputKind.RAW),
        ([Arg("v", "tensor(float)", [None, 3])], {"task": "regression"}, OutputKind.REGRESSOR),
        ([Arg("v", "tensor(int64)", [None, 1])], {}, OutputKind.RAW),
        ([VALUE], {"task": "classification"}, OutputKind.RAW),
        ([VALUE, VALUE], {}, OutputKind.RAW),
    ],
)
def test_output_kind(outputs: list[Arg], metadata: dict[str, Any], kind: OutputKind) -> None:
    assert derive_signature([FLOAT_IN], outputs, metadata).output_kind is kind


def test_task_follows_metadata_over_the_outputs() -> None:
    signature = derive_signature([FLOAT_IN], [VALUE], {"task": "classification"})
    assert signature.task == "classification"
    assert derive_signature([FLOAT_IN], [VALUE, VALUE], {}).task is None


# -- anomaly detection, clustering, several targets, text ----------------------------------------

LABEL_INT = Arg("label", "tensor(int64)", [None, 1])
ONE_SCORE = Arg("scores", "tensor(float)", [None, 1])
DISTANCES = Arg("scores", "tensor(float)", [None, 3])


@pytest.mark.parametrize(
    ("outputs", "metadata", "producer", "kind", "task"),
    [
        ([LABEL_INT, ONE_SCORE], {}, "skl2onnx", OutputKind.ANOMALY, "anomaly_detection"),
        (
            [Arg("label", "tensor(int64)", [None]), DISTANCES],
            {},
            "skl2onnx",
            OutputKind.CLUSTERING,
            "clustering",
        ),
        # Another producer's label + scores is read as before: a classifier.
        ([LABEL_INT, DISTANCES], {}, "", OutputKind.CLASSIFIER, "classification"),
        (
            [Arg("flag", "tensor(int64)", [None]), Arg("s", "tensor(double)", [None])],
            {"task": "anomaly_detection"},
            "",
            OutputKind.ANOMALY,
            "anomaly_detection",
        ),
        (
            [Arg("c", "tensor(int64)", [None]), Arg("d", "tensor(float)", [None, 5])],
            {"task": "clustering"},
            "",
            OutputKind.CLUSTERING,
            "clustering",
        ),
        (
            [Arg("variable", "tensor(float)", [None, 3])],
            {"targets": ["a", "b", "c"]},
            "skl2onnx",
            OutputKind.MULTI_REGRESSOR,
            "regression",
        ),
    ],
)
def test_detectors_clusters_and_targets(
    outputs: list[Arg], metadata: dict[str, Any], producer: str, kind: OutputKind, task: str
) -> None:
    signature = derive_signature([FLOAT_IN], outputs, metadata, producer)
    assert (signature.output_kind, signature.task) == (kind, task)
    if "targets" in metadata:
        assert signature.targets == ("a", "b", "c")


@pytest.mark.parametrize(
    ("outputs", "metadata", "message"),
    [
        (
            [LABEL_INT, DISTANCES],
            {"task": "anomaly_detection"},
            "one score per row; the model gives label",
        ),
        ([VALUE], {"task": "clustering"}, "task clustering needs two outputs"),
        (
            [Arg("v", "tensor(float)", [None, 2])],
            {"targets": ["a", "b", "c"]},
            "lists 3 targets but the model's output 'v' gives 2",
        ),
        ([LABEL_INT, ONE_SCORE], {"targets": ["a"]}, "not one \\[N, 1\\] float tensor"),
        ([VALUE], {"targets": ["a"], "task": "clustering"}, "only a regression has"),
    ],
)
def test_outputs_that_do_not_fit_the_task_or_targets(
    outputs: list[Arg], metadata: dict[str, Any], message: str
) -> None:
    with pytest.raises(SignatureError, match=message):
        derive_signature([FLOAT_IN], outputs, metadata, "skl2onnx")


def test_missing_values_come_from_metadata() -> None:
    plain = derive_signature([FLOAT_IN], [VALUE], {})
    assert (plain.missing_values, plain.missing_string) == (False, "")
    taking = derive_signature([FLOAT_IN], [VALUE], {"missing_values": True, "missing_string": "?"})
    assert (taking.missing_values, taking.missing_string) == (True, "?")


def test_a_single_text_column_is_one_string_feature() -> None:
    signature = derive_signature([Arg("text", "tensor(string)", [None, 1])], [LABEL, PROBS], {})
    assert signature.layout is InputLayout.TENSOR
    assert [(f.name, f.json_type) for f in signature.features] == [("text", "string")]
    named = derive_signature(
        [Arg("text", "tensor(string)", [None, 1])], [LABEL, PROBS], {"features": ["review"]}
    )
    assert named.feature_names == ("review",)
