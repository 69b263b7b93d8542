"""What the exported model is fed, and what the library is fed, for the same sample rows.

The library gets the rows as the user wrote them. The ONNX model gets them as the server will
hand them over: numbers cast to the input's type (float32, float64 with `double`, int64 for the
columns named in `int_columns`), a missing string as `missing_string`. `instances` are the same
rows as JSON requests carry them, `None` where a value is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from skl2onnx.common.data_types import (
    DataType,
    DoubleTensorType,
    FloatTensorType,
    Int64TensorType,
    StringTensorType,
)

from ml.export.errors import ExportError

__all__ = ["Feed", "InitialTypes", "Inputs", "build_inputs", "text_rows"]

Feed = dict[str, np.ndarray]
InitialTypes = list[tuple[str, DataType]]


@dataclass(frozen=True, slots=True)
class Inputs:
    """One sample, three ways: the ONNX feed, the library's rows, the JSON instances."""

    features: list[str]
    initial_types: InitialTypes
    feed: Feed
    library: Any
    instances: list[Any]
    per_column: bool
    missing: np.ndarray  # per row: some value is missing
    usable: np.ndarray  # per row: no infinity, which JSON cannot carry
    string_columns: list[str]


def build_inputs(
    estimator: Any,
    sample: Any,
    feature_names: Sequence[str] | None,
    *,
    per_column: bool,
    text: bool,
    int_columns: Sequence[str],
    double: bool,
    missing_string: str,
) -> Inputs:
    """The sample as both sides take it; raises ExportError on a sample that does not fit."""
    if text:
        if int_columns:
            raise ExportError("int_columns does not apply to a text model (one string input)")
        return _text_input(sample, feature_names)
    if per_column:
        return _per_column(sample, feature_names, int_columns, double, missing_string)
    if int_columns:
        raise ExportError(
            "int_columns needs one input per column (a pipeline with a ColumnTransformer); "
            "this model takes one float tensor"
        )
    return _single_input(estimator, sample, feature_names, double)


def _float_kind(double: bool) -> tuple[type[DataType], type[np.floating]]:
    return (DoubleTensorType, np.float64) if double else (FloatTensorType, np.float32)


def _per_column(
    sample: pd.DataFrame,
    feature_names: Sequence[str] | None,
    int_columns: Sequence[str],
    double: bool,
    missing_string: str,
) -> Inputs:
    """One [None, 1] input per column: strings stay strings, numbers become floats unless named
    in `int_columns`, whatever their dtype."""
    features = [str(c) for c in sample.columns]
    if feature_names is not None and list(feature_names) != features:
        raise ExportError(
            "with a ColumnTransformer the inputs are the DataFrame's columns "
            f"{features}, not {list(feature_names)}"
        )
    unknown = sorted(set(int_columns) - set(features))
    if unknown:
        raise ExportError(f"int_columns {unknown} are not columns of the sample {features}")
    float_type, float_dtype = _float_kind(double)
    n_rows = len(sample)
    initial_types: InitialTypes = []
    feed: Feed = {}
    missing = np.zeros(n_rows, dtype=bool)
    usable = np.ones(n_rows, dtype=bool)
    strings: list[str] = []
    columns: dict[str, list[Any]] = {}
    for column, name in zip(sample.columns, features, strict=True):
        values = sample[column]
        dtype = values.dtype
        absent = values.isna().to_numpy()
        if pd.api.types.is_bool_dtype(dtype):
            raise ExportError(f"column {name!r}: booleans are not supported, use int or str")
        if pd.api.types.is_numeric_dtype(dtype):
            numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
            if name in int_columns:
                if absent.any():
                    raise ExportError(
                        f"column {name!r} has missing values, which an integer input cannot "
                        "carry: leave it out of int_columns"
                    )
                if not np.array_equal(numbers, np.round(numbers)):
                    raise ExportError(f"column {name!r} is in int_columns but holds fractions")
                kind: DataType = Int64TensorType([None, 1])
                array = numbers.astype(np.int64)
                columns[name] = [int(v) for v in array]
            else:
                kind = float_type([None, 1])
                array = numbers.astype(float_dtype)
                usable &= ~np.isinf(numbers)
                columns[name] = [None if np.isnan(v) else float(v) for v in numbers]
        elif pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
            if name in int_columns:
                raise ExportError(f"column {name!r} is in int_columns but holds strings")
            text = [None if gap else v for v, gap in zip(values, absent, strict=True)]
            others = {type(v).__name__ for v in text if v is not None and not isinstance(v, str)}
            if others:
                raise ExportError(
                    f"column {name!r} mixes strings with {', '.join(sorted(others))} values"
                )
            kind = StringTensorType([None, 1])
            array = np.array([missing_string if v is None else v for v in text], dtype=object)
            columns[name] = text
            strings.append(name)
        else:
            raise ExportError(f"column {name!r} has unsupported dtype {dtype}")
        missing |= absent
        initial_types.append((name, kind))
        feed[name] = array.reshape(-1, 1)
    instances = [{name: columns[name][row] for name in features} for row in range(n_rows)]
    return Inputs(features, initial_types, feed, sample, instances, True, missing, usable, strings)


def _single_input(
    estimator: Any, sample: Any, feature_names: Sequence[str] | None, double: bool
) -> Inputs:
    """One float [None, F] input named "input", with the feature names that describe it."""
    columns = [str(c) for c in sample.columns] if isinstance(sample, pd.DataFrame) else None
    try:
        original = np.asarray(sample, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ExportError(
            f"sample must be numeric (use a ColumnTransformer pipeline for string columns): {exc}"
        ) from exc
    if original.ndim != 2 or original.shape[0] == 0:
        raise ExportError(f"sample must be a non-empty 2-D array, got shape {original.shape}")
    n_features = original.shape[1]
    expected = getattr(estimator, "n_features_in_", None)
    if expected is not None and expected != n_features:
        raise ExportError(f"sample has {n_features} columns, the model expects {expected}")

    fitted_names = getattr(estimator, "feature_names_in_", None)
    fitted = [str(c) for c in fitted_names] if fitted_names is not None else None
    if feature_names is not None:
        features = [str(f) for f in feature_names]
    else:
        features = columns or fitted or [f"x{i}" for i in range(n_features)]
    if len(features) != n_features:
        raise ExportError(f"{len(features)} feature names for {n_features} columns")
    if fitted is not None and features != fitted:
        raise ExportError(f"features {features} differ from those the model was fitted on {fitted}")

    # Give the library the container it was fitted with, or it warns about feature names.
    library: Any = pd.DataFrame(original, columns=fitted) if fitted is not None else original
    float_type, float_dtype = _float_kind(double)
    gaps = np.isnan(original)
    instances = [
        [None if gap else float(v) for v, gap in zip(row, row_gaps, strict=True)]
        for row, row_gaps in zip(original, gaps, strict=True)
    ]
    return Inputs(
        features,
        [("input", float_type([None, n_features]))],
        {"input": original.astype(float_dtype)},
        library,
        instances,
        False,
        gaps.any(axis=1),
        ~np.isinf(original).any(axis=1),
        [],
    )


def text_rows(sample: Any) -> tuple[list[str], str | None]:
    """The documents of a one-column text sample, and the column's name if it has one."""
    name: str | None = None
    if isinstance(sample, pd.DataFrame):
        if sample.shape[1] != 1:
            raise ExportError(
                f"a text model takes one string column; the sample has {sample.shape[1]}"
            )
        name = str(sample.columns[0])
        values = list(sample.iloc[:, 0])
    elif isinstance(sample, pd.Series):
        name = None if sample.name is None else str(sample.name)
        values = list(sample)
    else:
        array = np.asarray(sample, dtype=object)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise ExportError(f"a text sample is one column of strings, got shape {array.shape}")
        values = list(array)
    if not values or not all(isinstance(v, str) for v in values):
        raise ExportError("a text model's sample must be a non-empty column of strings (no nulls)")
    return values, name


def _text_input(sample: Any, feature_names: Sequence[str] | None) -> Inputs:
    """One [None, 1] string input named "input"; the library takes the documents as a list."""
    documents, name = text_rows(sample)
    features = [str(f) for f in feature_names] if feature_names is not None else [name or "text"]
    if len(features) != 1:
        raise ExportError(f"a text model has one feature, not {features}")
    n_rows = len(documents)
    return Inputs(
        features,
        [("input", StringTensorType([None, 1]))],
        {"input": np.array(documents, dtype=object).reshape(-1, 1)},
        documents,
        [[d] for d in documents],
        False,
        np.zeros(n_rows, dtype=bool),
        np.ones(n_rows, dtype=bool),
        [features[0]],
    )
