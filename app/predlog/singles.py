"""The common case of the prediction log, formatted by the column: single-row answers of one
version, route and status, numeric inputs in one tensor, no redacted feature. Each request only
appends its parts to a few lists (`SingleRows.add`); the formatter then writes all their lines
with a few calls for the lot: orjson writes the inputs as one matrix and each other column of
values as one array, split into the values' JSON, and one join sets them between the lines'
fixed parts. A line has the fields, order and values that `app.predlog.events.record` gives any
other request.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from app.logs import json_time_parts
from app.predlog.answers import RecentAnswer
from app.predlog.events import columns_pieces, json_columns
from ml.model import LoadedModel
from ml.outputs import Predictions
from ml.signature import InputLayout

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


class SingleRows:
    """Single-row answers set aside as columns, for one version, protocol, route and status."""

    __slots__ = (
        "ats",
        "classes",
        "dtype",
        "ids",
        "indexed",
        "inputs",
        "labels",
        "model",
        "pieces",
        "probabilities",
        "row_bytes",
        "seconds",
    )

    def __init__(
        self,
        model: LoadedModel,
        protocol: str,
        route: str,
        status: int,
        dtype: np.dtype[Any],
        with_probabilities: bool,
    ) -> None:
        self.model = model  # held, so that the version's id() keyed to this stays its own
        self.dtype = dtype
        self.row_bytes = len(model.signature.feature_names) * dtype.itemsize
        head = {"model": model.name, "version": model.version, "protocol": protocol,
                "route": route, "status": status}  # fmt: skip
        inputs = columns_pieces(model.signature.feature_names)
        # A classifier's probabilities are kept as values, in the order of its class names:
        # the order every answer of the version gives them in.
        keys = [orjson.dumps(name) for name in model.labels or ()] if with_probabilities else []
        self.classes = len(keys)
        answer_end = (
            [b'],"probabilities":[{' + keys[0] + b":", *(b"," + key + b":" for key in keys[1:]),
             b"}]}}\n"]
            if keys
            else [b"]}}\n"]
        )  # fmt: skip
        # The constant parts of a line, around its values: the line is
        # pieces[0] value pieces[1] value ... pieces[-1].
        self.pieces = [
            b'{"time":"',
            b"",  # between the time's second and its milliseconds
            b'","request_id":',
            b"," + orjson.dumps(head)[1:-1] + b',"error":null,"latency_ms":',
            b',"inputs":' + inputs[0],
            *inputs[1:-1],
            inputs[-1] + b',"answer":{"predictions":[',
            *answer_end,
        ]
        self.indexed = 0  # entries of `ids` in the recent answers' index (app.predlog.answers)
        # Times, latencies and inputs by value (a request's own objects are freed at its end,
        # for the next to reuse); ids, predicted labels and probabilities by reference.
        self.ats = array("d")
        self.seconds = array("d")
        self.inputs = bytearray()
        self.probabilities: list[float] = []  # each answer's, one after the other
        self.ids: list[str] = []
        self.labels: list[Any] = []

    @classmethod
    def for_answer(
        cls,
        model: LoadedModel,
        protocol: str,
        route: str,
        status: int,
        arrays: Mapping[str, np.ndarray],
        predictions: Predictions,
    ) -> SingleRows | None:
        """Columns for the version's answers on this route, judged from one of its answers;
        None when its answers take the general way."""
        if len(arrays) != 1:
            return None
        (matrix,) = arrays.values()
        if not cls.fits(model, matrix, predictions):
            return None
        with_probabilities = predictions.probabilities is not None
        return cls(model, protocol, route, status, matrix.dtype, with_probabilities)

    @staticmethod
    def fits(model: LoadedModel, matrix: np.ndarray, predictions: Predictions) -> bool:
        """Whether a version's single-row answers can be set aside as columns, judged from
        one of its answers (any number of rows)."""
        return (
            model.signature.layout is InputLayout.TENSOR
            and not model.metadata.get("redact")
            and matrix.dtype.kind in "biuf"
            and type(predictions) is Predictions
            and predictions.outputs is None
            and (predictions.probabilities is None or model.labels is not None)
        )

    def add(
        self, at: float, request_id: str, seconds: float, matrix: np.ndarray,
        predictions: Predictions,
    ) -> bool:  # fmt: skip
        """Set one answer aside; False when it does not fit (it takes the general way)."""
        try:
            if matrix.dtype is not self.dtype or len(matrix) != 1:
                return False  # its bytes are read back by this dtype, one row of them
            # Its bytes in row order (a copy, which costs less than lending numpy's buffer).
            data = matrix.tobytes()
            if len(data) != self.row_bytes:
                return False
            (label,) = predictions.predictions  # type: ignore[misc]
            if self.classes:
                row = predictions.probabilities[0]  # type: ignore[index]
                if len(row) != self.classes:
                    return False
        except (TypeError, ValueError):  # no rows at all, not one label, or no probabilities
            return False
        self.inputs += data
        if self.classes:
            self.probabilities.extend(row.values())
        self.ats.append(at)
        self.ids.append(request_id)
        self.seconds.append(seconds)
        self.labels.append(label)
        return True

    def __len__(self) -> int:
        return len(self.ids)

    def answer(self, index: int) -> RecentAnswer:
        """The version and prediction of the `index`th answer (for feedback)."""
        return self.model, self.labels[index], None

    def release(self) -> None:
        """Drop what only the lines needed, once written: ids and predictions stay, for
        feedback."""
        self.ats, self.seconds, self.inputs, self.probabilities = (
            array("d"),
            array("d"),
            bytearray(),
            [],
        )

    def lines(self) -> bytes:
        """Every line set aside, in the order added (TypeError, ValueError or
        orjson.JSONEncodeError when a value cannot be written: the caller counts them all as
        failed)."""
        count = len(self.ids)
        matrix = np.frombuffer(self.inputs, dtype=self.dtype).reshape(count, -1)
        # Numbers and null hold no commas: "," only ever separates two values.
        columns = [column.split(b",") for column in json_columns(matrix)]
        latencies = orjson.dumps(np.round(np.frombuffer(self.seconds) * 1000, 3), option=_NUMPY)
        values = [
            *json_time_parts(self.ats),
            _strings(self.ids),
            latencies[1:-1].split(b","),
            *columns,
            _values(self.labels),
        ]
        if self.classes:
            probabilities = np.array(self.probabilities).reshape(count, self.classes)
            values += [column.split(b",") for column in json_columns(probabilities)]
        # Every line's parts in order, set column by column: pieces[0], values[0][i], ...
        pieces = self.pieces
        width = len(pieces) + len(values)
        parts: list[bytes] = [b""] * (width * count)
        for index, piece in enumerate(pieces):
            parts[2 * index :: width] = [piece] * count
        for index, column in enumerate(values):
            parts[2 * index + 1 :: width] = column
        return b"".join(parts)


# Each writes a list as one JSON array and splits it into its elements' JSON where the bytes
# between two elements can only be that: orjson writes a NUL as an escape, never as itself.


def _strings(values: list[str]) -> list[bytes]:
    # Inside a string a quote is always escaped: '","' is only ever between two strings.
    return orjson.dumps(values)[1:-1].replace(b'","', b'"\x00"').split(b"\x00")


def _values(values: list[Any]) -> list[bytes]:
    kinds = set(map(type, values))
    if kinds == {str}:
        return _strings(values)
    if kinds <= {int, float}:
        return orjson.dumps(values)[1:-1].split(b",")
    return [orjson.dumps(value, option=_NUMPY) for value in values]
