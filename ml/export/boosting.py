"""XGBoost and LightGBM estimators inside skl2onnx, through onnxmltools' converters.

Registered with skl2onnx once per process, and only when a model holds such a step, so that an
install without the `boosting` extra exports everything else as before.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from ml.export.errors import ExportError

__all__ = ["BOOSTING_LIBRARIES", "register_converters"]

BOOSTING_LIBRARIES = ("xgboost", "lightgbm")
EXTRA_HINT = "pip install 'onnx-model-server[boosting]'"


def _library(step: Any) -> str:
    return type(step).__module__.partition(".")[0]


def register_converters(steps: Iterable[Any]) -> None:
    """Make skl2onnx able to convert the XGBoost and LightGBM estimators among `steps`."""
    for step in steps:
        library = _library(step)
        if library in BOOSTING_LIBRARIES:
            try:
                _register(library)
            except ImportError as exc:
                raise ExportError(
                    f"{type(step).__name__} needs onnxmltools to convert ({exc}).\n"
                    f"  try: {EXTRA_HINT}"
                ) from exc


def _positional(convert_xgboost: Any) -> Any:
    """onnxmltools reads XGBoost's trees by feature *index* (`f0`, `f1`, ...) and refuses the
    column names a model fitted on a DataFrame carries; the exported model takes its features
    by position anyway, so the names are set aside while it converts."""

    def convert(scope: Any, operator: Any, container: Any) -> None:
        booster = operator.raw_operator.get_booster()
        names, types = booster.feature_names, booster.feature_types
        booster.feature_names = None
        try:
            convert_xgboost(scope, operator, container)
        finally:
            booster.feature_names = names
            booster.feature_types = types

    return convert


@functools.cache
def _register(library: str) -> None:
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    if library == "xgboost":
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from xgboost import XGBClassifier, XGBRegressor

        pairs = [(XGBClassifier, "XGBoostXGBClassifier"), (XGBRegressor, "XGBoostXGBRegressor")]
        convert = _positional(convert_xgboost)
    else:
        from lightgbm import LGBMClassifier, LGBMRegressor
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        pairs = [
            (LGBMClassifier, "LightGbmLGBMClassifier"),
            (LGBMRegressor, "LightGbmLGBMRegressor"),
        ]
        convert = convert_lightgbm
    (classifier, classifier_alias), (regressor, regressor_alias) = pairs
    update_registered_converter(
        classifier,
        classifier_alias,
        calculate_linear_classifier_output_shapes,
        convert,
        options=classifier_options,
    )
    update_registered_converter(
        regressor, regressor_alias, calculate_linear_regressor_output_shapes, convert
    )
