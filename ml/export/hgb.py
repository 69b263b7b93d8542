"""skl2onnx's HistGradientBoosting converters, fed through a container that fixes two gaps.

- protobuf 7 refuses Python and numpy booleans in integer attributes, and skl2onnx 1.20 writes
  `False` into `nodes_missing_value_tracks_true` for every leaf; they are written as 0 and 1.
- skl2onnx reads every split as `feature <= threshold`, also where scikit-learn splits on a set
  of categories; such a split becomes a chain of `BRANCH_EQ` nodes, one per category, all leading
  to the same child, and unknown categories and missing values go where scikit-learn sends them.
- For a float64 input skl2onnx declares a float64 output that the tree operator cannot give:
  thresholds are kept as float64 (`*_as_tensor`), and the float output is cast to float64.

Passed per conversion (`custom_conversion_functions`), so skl2onnx's registry stays untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import TensorProto, numpy_helper
from skl2onnx.common.data_types import DoubleTensorType
from skl2onnx.operator_converters.random_forest import (
    convert_sklearn_random_forest_classifier,
    convert_sklearn_random_forest_regressor_converter,
)
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

__all__ = ["custom_converters"]

TREE_OPERATORS = frozenset({"TreeEnsembleClassifier", "TreeEnsembleRegressor"})
# Attributes that version 3 of the tree operators also takes as float64 tensors.
DOUBLE_ATTRIBUTES = ("nodes_values", "base_values", "class_weights", "target_weights")
Converter = Callable[[Any, Any, Any], None]


def custom_converters() -> dict[type, Converter]:
    """Converters for `convert_sklearn(custom_conversion_functions=...)`."""
    return {
        HistGradientBoostingClassifier: _wrap(convert_sklearn_random_forest_classifier),
        HistGradientBoostingRegressor: _wrap(convert_sklearn_random_forest_regressor_converter),
    }


def _wrap(convert: Converter) -> Converter:
    def converter(scope: Any, operator: Any, container: Any) -> None:
        double = isinstance(operator.inputs[0].type, DoubleTensorType)
        # Version 3 of the tree operators takes float64 thresholds, version 1 float32 only.
        tree_container = _TreeContainer(container, scope, operator.raw_operator, double=double)
        convert(scope, operator, tree_container, op_version=3 if double else 1)

    return converter


class _TreeContainer:
    """skl2onnx's container, with the tree operator's attributes repaired on their way in."""

    def __init__(self, container: Any, scope: Any, estimator: Any, *, double: bool) -> None:
        self._container = container
        self._scope = scope
        self._estimator = estimator
        self._double = double

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(
        self,
        op_type: str,
        inputs: Any,
        outputs: Any,
        op_domain: str = "",
        op_version: int | None = None,
        name: str | None = None,
        **attrs: Any,
    ) -> Any:
        if op_type not in TREE_OPERATORS:
            return self._container.add_node(
                op_type, inputs, outputs, op_domain, op_version, name, **attrs
            )
        attrs = {key: _plain_ints(value) for key, value in attrs.items()}
        _expand_categorical_splits(attrs, self._estimator)
        if not self._double:
            return self._container.add_node(
                op_type, inputs, outputs, op_domain, op_version, name, **attrs
            )
        for key in DOUBLE_ATTRIBUTES:
            if key in attrs:
                values = np.asarray(attrs.pop(key), dtype=np.float64)
                attrs[f"{key}_as_tensor"] = numpy_helper.from_array(values)
        # The operator answers float32 whatever its input; the graph declares float64, so every
        # float output goes through a cast (the label output of a classifier is not a float).
        names = [outputs] if isinstance(outputs, str) else list(outputs)
        float_outputs = names[-1:]
        renamed = [
            self._scope.get_unique_variable_name(f"{n}_float") if n in float_outputs else n
            for n in names
        ]
        result = self._container.add_node(
            op_type, inputs, renamed, op_domain, op_version, name, **attrs
        )
        for original, float_name in zip(names, renamed, strict=True):
            if original != float_name:
                self._container.add_node(
                    "Cast",
                    float_name,
                    original,
                    name=self._scope.get_unique_operator_name("Cast"),
                    to=TensorProto.DOUBLE,
                )
        return result


def _plain_ints(value: Any) -> Any:
    if isinstance(value, list):
        return [int(v) if isinstance(v, bool | np.bool_) else v for v in value]
    return value


def _categories(bitset: np.ndarray) -> list[int]:
    """The category values whose bits are set in one of scikit-learn's 256-bit bitsets."""
    as_bytes = np.ascontiguousarray(bitset, dtype="<u4").view(np.uint8)
    bits = np.unpackbits(as_bytes, bitorder="little")
    return [int(i) for i in np.flatnonzero(bits)]


def _expand_categorical_splits(attrs: dict[str, Any], estimator: Any) -> None:
    """Rewrite, in place, the trees of a model with categorical features to read the raw input.

    scikit-learn encodes categorical columns first (category -> its rank, unknown -> NaN) and
    moves them in front of the numeric ones; its trees test those codes. Here every test reads
    the original column, and a categorical split tests the raw category values it stands for.
    """
    preprocessor = getattr(estimator, "_preprocessor", None)
    if preprocessor is None:
        return
    node_keys = [key for key in attrs if key.startswith("nodes_")]
    for key in node_keys:
        attrs[key] = list(attrs[key])  # nodes_values may come as a numpy array
    mask = np.asarray(estimator.is_categorical_, dtype=bool)
    original_column = np.concatenate([np.flatnonzero(mask), np.flatnonzero(~mask)])
    attrs["nodes_featureids"] = [int(original_column[f]) for f in attrs["nodes_featureids"]]
    raw_categories = preprocessor.named_transformers_["encoder"].categories_
    known_bitsets, feature_rows = estimator._bin_mapper.make_known_categories_bitsets()
    position = {
        (int(t), int(n)): i
        for i, (t, n) in enumerate(zip(attrs["nodes_treeids"], attrs["nodes_nodeids"], strict=True))
    }
    predictors = [tree for iteration in estimator._predictors for tree in iteration]
    for tree_id, tree in enumerate(predictors):
        next_id = len(tree.nodes)
        for node_id, node in enumerate(tree.nodes):
            if node["is_leaf"] or not node["is_categorical"]:
                continue
            feature = int(node["feature_idx"])

            def raw(codes: list[int], feature: int = feature) -> set[float]:
                return {_category_value(raw_categories[feature][c], feature) for c in codes}

            going_left = raw(_categories(tree.raw_left_cat_bitsets[node["bitset_idx"]]))
            known = raw(_categories(known_bitsets[feature_rows[feature]]))
            i = position[(tree_id, node_id)]
            left = attrs["nodes_truenodeids"][i]
            right = attrs["nodes_falsenodeids"][i]
            # Values the chain does not list (unknown categories, NaN) go to `otherwise`, where
            # scikit-learn sends missing values.
            if node["missing_go_to_left"]:
                listed, target, otherwise = sorted(known - going_left), right, left
            else:
                listed, target, otherwise = sorted(going_left), left, right
            rows = [i]
            for _ in listed[1:]:
                for key in node_keys:
                    attrs[key].append(attrs[key][i])
                rows.append(len(attrs["nodes_nodeids"]) - 1)
                attrs["nodes_nodeids"][-1] = next_id
                next_id += 1
            # A split that lists nothing sends everything one way: NaN equals no value.
            for k, (row, value) in enumerate(zip(rows, listed or [float("nan")], strict=True)):
                attrs["nodes_modes"][row] = "BRANCH_EQ"
                attrs["nodes_values"][row] = value
                attrs["nodes_truenodeids"][row] = target
                attrs["nodes_falsenodeids"][row] = (
                    attrs["nodes_nodeids"][rows[k + 1]] if k + 1 < len(rows) else otherwise
                )
                attrs["nodes_missing_value_tracks_true"][row] = 0
    # onnxruntime expects each tree's nodes together, in node id order.
    order = sorted(
        range(len(attrs["nodes_nodeids"])),
        key=lambda r: (attrs["nodes_treeids"][r], attrs["nodes_nodeids"][r]),
    )
    for key in node_keys:
        attrs[key] = [attrs[key][r] for r in order]


def _category_value(value: Any, feature: int) -> float:
    """A raw category as the float the model's input carries; strings cannot be compared."""
    if isinstance(value, str):
        raise ValueError(
            f"categorical feature {feature} has string categories {value!r}; the exported model "
            "takes numbers: encode the column with an OrdinalEncoder step in a Pipeline before "
            "the estimator"
        )
    return float(value)
