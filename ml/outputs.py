"""Turns a session's raw outputs into predictions, probabilities or named outputs per row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np

from ml.signature import OutputKind, Signature


@dataclass(slots=True)  # not frozen: a frozen dataclass costs more to build, once per request
class Predictions:
    """The answer for a batch of rows, in request order.

    `predictions` (with `probabilities` for a classifier) for recognised models, or `outputs`
    by output name for any other model.
    """

    predictions: list[Any] | None = None
    probabilities: list[dict[str, float]] | None = None
    outputs: dict[str, Any] | None = None


def to_jsonable(value: Any) -> Any:
    """numpy arrays and scalars, and ZipMap dicts with integer keys, as plain JSON values."""
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return [to_jsonable(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def _flat_list(values: Any) -> list[Any]:
    """A label output as a list: one value per row, whether shaped [N] or [N, 1]."""
    array = np.asarray(values)
    return (array if array.ndim == 1 else array.reshape(-1)).tolist()  # type: ignore[no-any-return]


def decode(signature: Signature, labels: Sequence[str] | None, raw: Sequence[Any]) -> Predictions:
    """Read the session outputs of a batch according to the model's output kind."""
    kind = signature.output_kind
    if kind is OutputKind.CLASSIFIER:
        predicted = _flat_list(raw[0])
        keys = labels or [str(i) for i in range(np.asarray(raw[1]).shape[1])]
        # One dict per row, built by map() without a Python frame per row (cheaper than a
        # comprehension on batches); widths were checked at load, so zip needs no strict check.
        rows = np.asarray(raw[1]).tolist()
        probabilities = list(map(dict, map(zip, repeat(keys), rows)))
        return Predictions(predictions=predicted, probabilities=probabilities)
    if kind is OutputKind.CLASSIFIER_ZIPMAP:
        predicted = _flat_list(raw[0])
        probabilities = [{str(k): float(v) for k, v in row.items()} for row in raw[1]]
        return Predictions(predictions=predicted, probabilities=probabilities)
    if kind is OutputKind.REGRESSOR:
        values = np.asarray(raw[0])
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        return Predictions(predictions=values.tolist())
    return Predictions(
        outputs={
            info.name: to_jsonable(value)
            for info, value in zip(signature.outputs, raw, strict=True)
        }
    )
