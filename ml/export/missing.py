"""Missing values: whether an exported version takes them, and the rows that prove it.

The rule, read from the estimator: a column may be missing when the first step that reads it
imputes it (`SimpleImputer`), encodes it (a `OneHotEncoder` that ignores unknown categories or
saw missing ones), or passes it through steps that keep NaN as NaN (scalers, `passthrough`) to an
estimator that handles NaN itself (HistGradientBoosting, XGBoost, LightGBM). A version takes
missing values when every column may be missing. The claim is then checked: rows with each column
missing in turn are added to the parity check, and the library must answer them too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from skl2onnx.common.data_types import StringTensorType
from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    RobustScaler,
    StandardScaler,
)

__all__ = [
    "IMPUTED_STRING",
    "MISSING_STRINGS",
    "imputer_converters",
    "takes_missing",
    "with_missing_rows",
]

NAN_ESTIMATORS = frozenset(
    {
        "HistGradientBoostingClassifier",
        "HistGradientBoostingRegressor",
        "XGBClassifier",
        "XGBRegressor",
        "LGBMClassifier",
        "LGBMRegressor",
    }
)
# Steps whose output is NaN exactly where their input is, in the library and in the graph.
NAN_KEEPING = (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler)
# skl2onnx imputes strings only when the missing marker is a string: a string imputer is
# converted with this marker, which is then what a missing string is fed as.
IMPUTED_STRING = ""
# What a missing string may be fed as, tried in order: the imputer's marker or an unknown
# category (""), or the category a OneHotEncoder learnt from NaN or None (skl2onnx writes it as
# its text).
MISSING_STRINGS = (IMPUTED_STRING, "nan", "None")
Converter = Callable[[Any, Any, Any], None]


def takes_missing(estimator: Any, downstream: bool = False) -> bool:
    """Whether every column of `estimator`'s input may be missing (the rule above);
    `downstream` says whether what follows handles NaN."""
    if isinstance(estimator, str):
        return estimator == "passthrough" and downstream
    if isinstance(estimator, Pipeline):
        handled = downstream
        for _, step in reversed(estimator.steps):
            if step is None or step == "passthrough":
                continue
            handled = takes_missing(step, handled)
        return handled
    if isinstance(estimator, ColumnTransformer):
        branches = [
            step for _, step, columns in estimator.transformers_ if _reads_columns(step, columns)
        ]
        return bool(branches) and all(takes_missing(step, downstream) for step in branches)
    if isinstance(estimator, SimpleImputer):
        return True
    if isinstance(estimator, OneHotEncoder):
        return estimator.handle_unknown != "error" or any(
            pd.isna(c) for categories in estimator.categories_ for c in categories
        )
    if isinstance(estimator, NAN_KEEPING):
        return downstream
    if isinstance(estimator, FunctionTransformer) and estimator.func is None:
        return downstream  # how a fitted ColumnTransformer holds "passthrough"
    return type(estimator).__name__ in NAN_ESTIMATORS


def _reads_columns(step: Any, columns: Any) -> bool:
    if isinstance(step, str) and step == "drop":
        return False
    return not (hasattr(columns, "__len__") and len(columns) == 0)


def with_missing_rows(sample: Any, skip: frozenset[str]) -> Any:
    """`sample` followed by copies of its first row with one column missing each, then one with
    all of them missing (columns in `skip`, integer inputs, are kept)."""
    if isinstance(sample, pd.DataFrame):
        first = sample.iloc[0].to_dict()
        names = [c for c in sample.columns if str(c) not in skip]
        probes = []
        for gaps in [*([c] for c in names), names]:
            row = dict(first)
            row.update({c: None if _is_text(sample[c]) else np.nan for c in gaps})
            probes.append(row)
        rows = pd.concat([sample, pd.DataFrame(probes, columns=sample.columns)], ignore_index=True)
        numeric = [c for c in names if not _is_text(sample[c])]
        return rows.astype(dict.fromkeys(numeric, np.float64))
    array = np.asarray(sample, dtype=np.float64)
    n_features = array.shape[1]
    probes = np.repeat(array[:1], n_features + 1, axis=0)
    probes[np.arange(n_features), np.arange(n_features)] = np.nan
    probes[-1] = np.nan
    return np.concatenate([array, probes])


def _is_text(values: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(values.dtype)


def imputer_converters() -> dict[type, Converter]:
    """A SimpleImputer on strings, converted with IMPUTED_STRING as its missing marker."""
    return {SimpleImputer: _string_imputer}


def _string_imputer(scope: Any, operator: Any, container: Any) -> None:
    imputer = operator.raw_operator
    marker = imputer.missing_values
    if not isinstance(operator.inputs[0].type, StringTensorType) or isinstance(marker, str):
        convert_sklearn_imputer(scope, operator, container)
        return
    imputer.missing_values = IMPUTED_STRING
    try:
        convert_sklearn_imputer(scope, operator, container)
    finally:
        imputer.missing_values = marker
