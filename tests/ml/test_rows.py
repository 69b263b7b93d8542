"""ml.rows: rows checked against the signature and laid out as input arrays."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from onnx_factories import IRIS_FEATURES

from ml.errors import FieldError, InvalidInput
from ml.rows import RowCodec
from ml.signature import derive_signature

try:
    import jsonschema
except ImportError:  # not a dependency: fall back to a validator of the subset row_schema uses
    jsonschema = None


@dataclass(frozen=True)
class Arg:
    """Stands in for onnxruntime's NodeArg."""

    name: str
    type: str
    shape: Sequence[Any]


OUTPUTS = [Arg("label", "tensor(string)", [None]), Arg("probabilities", "tensor(float)", [None, 3])]
EXPECTS = "iris expects 4 features: sepal_length, sepal_width, petal_length, petal_width"
ROW = [5.1, 3.5, 1.4, 0.2]
NAMED = dict(zip(IRIS_FEATURES, ROW, strict=True))


@pytest.fixture(scope="module")
def iris() -> RowCodec:
    signature = derive_signature(
        [Arg("input", "tensor(float)", [None, 4])], OUTPUTS, {"features": list(IRIS_FEATURES)}
    )
    return RowCodec("iris", signature)


@pytest.fixture(scope="module")
def columns() -> RowCodec:
    inputs = [
        Arg("color", "tensor(string)", [None, 1]),
        Arg("size", "tensor(float)", [None, 1]),
        Arg("count", "tensor(int64)", [None, 1]),
    ]
    return RowCodec("shop", derive_signature(inputs, [Arg("v", "tensor(float)", [None, 1])], {}))


def tensor_codec(onnx_type: str) -> RowCodec:
    signature = derive_signature(
        [Arg("x", onnx_type, [None, 2])], [Arg("y", "tensor(float)", [None, 1])], {}
    )
    return RowCodec("m", signature)


def invalid(codec: RowCodec, rows: list[Any], loc: tuple[str | int, ...]) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        codec.encode(rows, loc)
    return caught.value


# -- layout ------------------------------------------------------------------------------------


def test_positional_and_named_rows_give_the_same_array(iris: RowCodec) -> None:
    positional = iris.encode([ROW], ("features",))
    named = iris.encode([NAMED], ("features",))
    assert list(positional) == ["input"]
    assert positional["input"].dtype == np.float32
    assert positional["input"].shape == (1, 4)
    np.testing.assert_array_equal(positional["input"], named["input"])
    np.testing.assert_array_equal(positional["input"], np.array([ROW], dtype=np.float32))


def test_batch_of_mixed_rows(iris: RowCodec) -> None:
    reordered = {name: NAMED[name] for name in reversed(IRIS_FEATURES)}
    rows = [ROW, reordered, [1, 2, 3, 4]]
    arrays = iris.encode(rows, ("instances",))
    expected = np.array([ROW, ROW, [1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    np.testing.assert_array_equal(arrays["input"], expected)
    assert arrays["input"].shape == (3, 4)


def test_integers_are_numbers(iris: RowCodec) -> None:
    assert iris.encode([[5, 3, 1, 0]], ("features",))["input"].dtype == np.float32


def test_double_and_int64_tensors() -> None:
    double = tensor_codec("tensor(double)").encode([[0.1, 2]], ("features",))["x"]
    assert double.dtype == np.float64
    np.testing.assert_array_equal(double, [[0.1, 2.0]])
    ints = tensor_codec("tensor(int64)").encode([[1, -2], [3, 4]], ("instances",))["x"]
    assert ints.dtype == np.int64
    np.testing.assert_array_equal(ints, [[1, -2], [3, 4]])


def test_columns_layout_gives_one_column_per_input(columns: RowCodec) -> None:
    rows = [
        {"color": "red", "size": 1.5, "count": 2},
        ["blue", 3, 7],
    ]
    arrays = columns.encode(rows, ("instances",))
    assert list(arrays) == ["color", "size", "count"]
    assert arrays["color"].dtype == object
    assert arrays["size"].dtype == np.float32
    assert arrays["count"].dtype == np.int64
    assert {a.shape for a in arrays.values()} == {(2, 1)}
    assert arrays["color"].tolist() == [["red"], ["blue"]]
    assert arrays["size"].tolist() == [[1.5], [3.0]]
    assert arrays["count"].tolist() == [[2], [7]]


# -- row shape and names -----------------------------------------------------------------------


def test_wrong_count(iris: RowCodec) -> None:
    error = invalid(iris, [[5.1, 3.5, 1.4]], ("features",))
    assert f"{EXPECTS}; got 3" in error.detail
    assert error.errors == [FieldError(("features",), f"{EXPECTS}; got 3")]


def test_wrong_count_in_a_batch_names_the_row(iris: RowCodec) -> None:
    error = invalid(iris, [ROW, [*ROW, 9.9]], ("instances",))
    assert "expects 4 features" in error.detail
    assert "got 5" in error.detail
    assert [e.loc for e in error.errors] == [("instances", 1)]


def test_missing_feature(iris: RowCodec) -> None:
    row = {k: v for k, v in NAMED.items() if k != "petal_width"}
    error = invalid(iris, [row], ("features",))
    assert error.errors == [FieldError(("features", "petal_width"), "missing feature")]
    assert "missing feature" in error.detail
    assert EXPECTS in error.detail


def test_unknown_feature(iris: RowCodec) -> None:
    error = invalid(iris, [{**NAMED, "petal_colour": 1.0}], ("features",))
    assert error.errors == [FieldError(("features", "petal_colour"), "unknown feature")]
    assert EXPECTS in error.detail


def test_misspelt_feature_is_missing_and_unknown(iris: RowCodec) -> None:
    row = {k if k != "petal_width" else "petal_widht": v for k, v in NAMED.items()}
    error = invalid(iris, [ROW, row], ("instances",))
    assert error.errors == [
        FieldError(("instances", 1, "petal_width"), "missing feature"),
        FieldError(("instances", 1, "petal_widht"), "unknown feature"),
    ]


# Rows come from parsed JSON, so every value a JSON document can hold in a row's place is tried.
@pytest.mark.parametrize("row", ["5.1,3.5,1.4,0.2", 5.1, None, True, 7])
def test_row_that_is_neither_list_nor_object(iris: RowCodec, row: Any) -> None:
    error = invalid(iris, [row], ("features",))
    assert [e.loc for e in error.errors] == [("features",)]
    assert "a row must be a list of 4 values or an object keyed by feature name" in error.detail
    error = invalid(iris, [ROW, ROW, row], ("instances",))
    assert [e.loc for e in error.errors] == [("instances", 2)]


# -- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "described"),
    [
        ("1.4", "the string '1.4'"),
        ("", "the string ''"),
        (True, "the boolean true"),
        (False, "the boolean false"),
        (None, "null: model iris does not take missing values"),
        (math.nan, "nan"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
        ([1.4], "a list"),
        ({"v": 1.4}, "an object"),
    ],
)
def test_non_numbers_where_numbers_belong(iris: RowCodec, value: Any, described: str) -> None:
    message = f"expected a finite number, got {described}"
    row = [5.1, 3.5, value, 0.2]
    error = invalid(iris, [row], ("features",))
    assert error.errors == [FieldError(("features", "petal_length"), message)]
    assert f"features.petal_length: {message}" in error.detail
    named = {**NAMED, "petal_length": value}
    error = invalid(iris, [ROW, ROW, named], ("instances",))
    assert error.errors == [FieldError(("instances", 2, "petal_length"), message)]


def test_every_bad_value_is_listed(iris: RowCodec) -> None:
    rows = [["a", 1, 2, 3], ROW, [1, 2, None, True]]
    error = invalid(iris, rows, ("instances",))
    assert [e.loc for e in error.errors] == [
        ("instances", 0, "sepal_length"),
        ("instances", 2, "petal_length"),
        ("instances", 2, "petal_width"),
    ]


def test_number_beyond_float32_range_is_refused(iris: RowCodec) -> None:
    # 1e39 is a finite JSON number, but as float32 it would silently become Infinity.
    error = invalid(iris, [[1e39, 3.5, 1.4, 0.2]], ("features",))
    assert [e.loc for e in error.errors] == [("features", "sepal_length")]


def test_int64_column_refuses_fractions(columns: RowCodec) -> None:
    error = invalid(columns, [{"color": "red", "size": 1.0, "count": 1.5}], ("features",))
    assert error.errors == [FieldError(("features", "count"), "expected an integer, got 1.5")]
    error = invalid(columns, [["red", 1.0, True]], ("features",))
    assert error.errors == [
        FieldError(("features", "count"), "expected an integer, got the boolean true")
    ]


def test_int64_refuses_integers_out_of_range(columns: RowCodec) -> None:
    error = invalid(columns, [["red", 1.0, 2**70]], ("features",))
    assert [e.loc for e in error.errors] == [("features", "count")]
    error = invalid(tensor_codec("tensor(int64)"), [[1, 2], [-(2**64), 0]], ("instances",))
    assert [e.loc for e in error.errors] == [("instances", 1, "x0")]


def test_integer_past_64_bits_read_as_a_float_is_out_of_range(columns: RowCodec) -> None:
    # orjson reads an integer past 64 bits as a float; the client still hears "out of range".
    error = invalid(columns, [["red", 1.0, float(2**70)]], ("features",))
    [field] = error.errors
    assert field.loc == ("features", "count")
    assert field.msg.startswith("expected an integer from -9223372036854775808 to ")


def test_string_column_refuses_numbers(columns: RowCodec) -> None:
    error = invalid(columns, [[3, 1.0, 2]], ("features",))
    assert error.errors == [FieldError(("features", "color"), "expected a string, got 3")]
    error = invalid(columns, [["red", 1.0, 2], [None, 1.0, 2]], ("instances",))
    message = "expected a string, got null: model shop does not take missing values"
    assert error.errors == [FieldError(("instances", 1, "color"), message)]


def test_float_column_refuses_strings(columns: RowCodec) -> None:
    error = invalid(columns, [{"color": "red", "size": "big", "count": 2}], ("features",))
    assert error.errors == [
        FieldError(("features", "size"), "expected a finite number, got the string 'big'")
    ]


def test_other_locations_prefix_errors(iris: RowCodec) -> None:
    error = invalid(iris, [ROW, [1, 2, 3, "x"]], ("inputs", 0, "data"))
    assert [e.loc for e in error.errors] == [("inputs", 0, "data", 1, "petal_width")]


# -- JSON Schema of a row ----------------------------------------------------------------------


def _matches(schema: dict[str, Any] | bool, value: Any) -> bool:
    """A validator of the JSON Schema keywords row_schema() uses (when jsonschema is missing)."""
    if isinstance(schema, bool):
        return schema
    known = {
        "oneOf", "type", "title", "properties", "required", "additionalProperties",
        "prefixItems", "items", "minItems", "maxItems",
    }  # fmt: skip
    assert set(schema) <= known, f"row_schema uses keywords this test does not know: {schema}"
    if "oneOf" in schema and sum(_matches(s, value) for s in schema["oneOf"]) != 1:
        return False
    kind = schema.get("type")
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    checks = {
        None: True,
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "number": is_number,
        "integer": is_number and float(value).is_integer(),
    }
    if not checks[kind]:
        return False
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        if any(name not in value for name in schema.get("required", [])):
            return False
        for name, item in value.items():
            if name in properties:
                if not _matches(properties[name], item):
                    return False
            elif schema.get("additionalProperties", True) is False:
                return False
    if isinstance(value, list):
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            return False
        prefix = schema.get("prefixItems", [])
        for index, item in enumerate(value):
            rule = prefix[index] if index < len(prefix) else schema.get("items", True)
            if not _matches(rule, item):
                return False
    return True


def validates(schema: dict[str, Any], value: Any) -> bool:
    if jsonschema is not None:
        return jsonschema.Draft202012Validator(schema).is_valid(value)
    return _matches(schema, value)


def test_row_schema_is_valid_json_schema(iris: RowCodec, columns: RowCodec) -> None:
    for codec in (iris, columns):
        schema = codec.row_schema()
        if jsonschema is not None:
            jsonschema.Draft202012Validator.check_schema(schema)
        else:
            assert {s["type"] for s in schema["oneOf"]} == {"object", "array"}


def test_row_schema_describes_the_features(iris: RowCodec, columns: RowCodec) -> None:
    by_name, by_position = iris.row_schema()["oneOf"]
    assert by_name["required"] == list(IRIS_FEATURES)
    assert by_name["properties"] == {name: {"type": "number"} for name in IRIS_FEATURES}
    assert [item["title"] for item in by_position["prefixItems"]] == list(IRIS_FEATURES)
    assert by_position["minItems"] == by_position["maxItems"] == 4
    types = [item["type"] for item in columns.row_schema()["oneOf"][1]["prefixItems"]]
    assert types == ["string", "number", "integer"]


def test_row_schema_accepts_good_rows(iris: RowCodec, columns: RowCodec) -> None:
    assert validates(iris.row_schema(), ROW)
    assert validates(iris.row_schema(), NAMED)
    assert validates(iris.row_schema(), [5, 3, 1, 0])
    assert validates(columns.row_schema(), ["red", 1.5, 2])
    assert validates(columns.row_schema(), {"color": "red", "size": 1.5, "count": 2})


@pytest.mark.parametrize(
    "row",
    [
        [5.1, 3.5, 1.4],
        [5.1, 3.5, 1.4, 0.2, 9.9],
        [5.1, 3.5, "1.4", 0.2],
        [5.1, 3.5, None, 0.2],
        {k: v for k, v in NAMED.items() if k != "petal_width"},
        {**NAMED, "extra": 1.0},
        {**NAMED, "sepal_width": "wide"},
        "5.1,3.5,1.4,0.2",
    ],
)
def test_row_schema_refuses_bad_rows(iris: RowCodec, row: Any) -> None:
    assert not validates(iris.row_schema(), row)
    with pytest.raises(InvalidInput):
        iris.encode([row], ("features",))


def test_row_schema_refuses_bad_column_rows(columns: RowCodec) -> None:
    assert not validates(columns.row_schema(), [3, 1.5, 2])
    assert not validates(columns.row_schema(), ["red", 1.5, 2.5])


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 64])
def test_tensor_rows_laid_out_in_order_whatever_the_row_count(iris: RowCodec, count: int) -> None:
    # Few rows are read by numpy's nested reader, more as one flat run: the same array either way.
    rows = [[float(i), i + 0.5, 1, -i] for i in range(count)]
    arrays = iris.encode(rows, ("instances",))
    assert list(arrays) == ["input"]
    assert arrays["input"].dtype == np.float32
    np.testing.assert_array_equal(arrays["input"], np.array(rows, dtype=np.float32))


# -- missing values ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gaps() -> RowCodec:
    """Iris features for a version whose metadata.json says it takes missing values."""
    metadata = {"features": list(IRIS_FEATURES), "missing_values": True}
    return RowCodec(
        "gaps", derive_signature([Arg("input", "tensor(float)", [None, 4])], OUTPUTS, metadata)
    )


@pytest.fixture(scope="module")
def gap_columns() -> RowCodec:
    inputs = [
        Arg("color", "tensor(string)", [None, 1]),
        Arg("size", "tensor(double)", [None, 1]),
        Arg("count", "tensor(int64)", [None, 1]),
    ]
    metadata = {"missing_values": True, "missing_string": "unknown"}
    outputs = [Arg("v", "tensor(float)", [None, 1])]
    return RowCodec("shop", derive_signature(inputs, outputs, metadata))


@pytest.mark.parametrize("rows", [1, 3, 9])  # under and over the flat read's threshold
def test_null_numbers_become_nan_for_a_version_that_takes_missing_values(
    gaps: RowCodec, rows: int
) -> None:
    batch = [
        [5.1, None, 1.4, 0.2] if i % 2 else {**NAMED, "petal_width": None} for i in range(rows)
    ]
    array = gaps.encode(batch, ("instances",))["input"]
    expected = np.array(
        [[5.1, np.nan, 1.4, 0.2] if i % 2 else [5.1, 3.5, 1.4, np.nan] for i in range(rows)],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(array, expected)  # NaN equals NaN here
    assert array.dtype == np.float32


def test_null_strings_become_the_missing_string_and_null_integers_are_refused(
    gap_columns: RowCodec,
) -> None:
    arrays = gap_columns.encode(
        [["red", None, 2], {"color": None, "size": 1.5, "count": 3}], ("instances",)
    )
    assert arrays["color"].ravel().tolist() == ["red", "unknown"]
    assert np.isnan(arrays["size"][0, 0]) and arrays["size"][1, 0] == 1.5
    error = invalid(gap_columns, [["red", 1.0, None]], ("features",))
    assert error.errors == [
        FieldError(
            ("features", "count"),
            "expected an integer, got null: only number and string features can be missing",
        )
    ]


def test_missing_values_do_not_let_infinity_or_omitted_keys_through(gaps: RowCodec) -> None:
    error = invalid(gaps, [[5.1, math.inf, None, 0.2]], ("features",))
    assert error.errors == [
        FieldError(("features", "sepal_width"), "expected a finite number, got inf")
    ]
    partial = {k: v for k, v in NAMED.items() if k != "sepal_width"}
    error = invalid(gaps, [partial], ("features",))
    assert error.errors == [FieldError(("features", "sepal_width"), "missing feature")]


def test_row_schema_says_which_features_may_be_null(gaps: RowCodec, iris: RowCodec) -> None:
    taking = gaps.row_schema()["oneOf"][0]["properties"]
    assert taking["sepal_width"] == {"type": ["number", "null"]}
    assert iris.row_schema()["oneOf"][0]["properties"]["sepal_width"] == {"type": "number"}


def test_tensors_with_nan_pass_only_where_the_version_takes_missing_values(
    gaps: RowCodec, iris: RowCodec
) -> None:
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.0, np.nan, 4.2, 1.3]], dtype=np.float32)
    checked, count = gaps.check_arrays({"input": rows})
    assert count == 2 and np.isnan(checked["input"][1, 1])
    with pytest.raises(InvalidInput) as caught:
        iris.check_arrays({"input": rows})
    [field] = caught.value.errors
    assert field.loc == ("inputs", "input")
    assert field.msg == (
        "input 'input' holds nan in row 1 (feature 'sepal_width'): "
        "model iris does not take missing values"
    )
    rows[0, 3] = -np.inf
    with pytest.raises(InvalidInput, match=r"holds -inf in row 0 \(feature 'petal_width'\): "):
        gaps.check_arrays({"input": rows})


def test_null_strings_in_tensors(gap_columns: RowCodec, columns: RowCodec) -> None:
    def arrays() -> dict[str, np.ndarray]:
        color = np.array([["red"], [None]], dtype=object)
        return {
            "color": color,
            "size": np.array([[1.0], [2.0]]),
            "count": np.array([[1], [2]], dtype=np.int64),
        }

    checked, _ = gap_columns.check_arrays(arrays())
    assert checked["color"].ravel().tolist() == ["red", "unknown"]
    loose = arrays()
    loose["size"] = loose["size"].astype(np.float32)
    with pytest.raises(InvalidInput, match=r"holds null in row 1 \(feature 'color'\): model shop"):
        columns.check_arrays(loose)


def test_a_string_tensor_holding_other_values_is_refused_either_way(
    gap_columns: RowCodec, columns: RowCodec
) -> None:
    for codec in (gap_columns, columns):
        arrays = {
            "color": np.array([["red"], [None], [3]], dtype=object),
            "size": np.ones((3, 1), dtype=codec.features[1].dtype),
            "count": np.ones((3, 1), dtype=np.int64),
        }
        with pytest.raises(InvalidInput, match="input 'color' takes strings; element 2 is 3"):
            codec.check_arrays(arrays)
