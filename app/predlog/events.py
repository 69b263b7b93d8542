"""One logged request, and the JSON it becomes. Formatted on the event loop by the log's
formatter task, between requests (app.predlog.log): a worker thread doing this Python work would
hold the interpreter lock, and the loop would wait for it after every socket call; the sinks'
threads only move finished bytes. Inputs are written by column, so that orjson writes them
from the arrays themselves, with no Python work per value.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import orjson

from app.logs import json_time
from app.predlog.answers import read_outputs
from ml.served import Served
from ml.signature import InputLayout

REDACTED_HASH_CHARS = 32
_TENSOR = InputLayout.TENSOR


@dataclass(slots=True)  # not frozen: a frozen dataclass costs more to build, once per request
class Event:
    """A finished request the log keeps: what the model layer noted, and what the caller got."""

    note: Served
    request_id: str
    protocol: str  # "http" or "grpc"
    route: str
    status: int  # HTTP status, or the gRPC code's number (0 is OK)
    seconds: float
    at: float  # wall-clock time of the answer
    rows: int


class Redactor:
    """Replaces the values of named features by a keyed hash (HMAC-SHA256), or by null without a
    key: an unkeyed hash of a small set of values is undone by hashing every candidate."""

    def __init__(self, key: bytes | None) -> None:
        self.key = key

    def __call__(self, value: Any) -> str | None:
        if self.key is None:
            return None
        text = value.decode() if isinstance(value, bytes) else str(value)
        digest = hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()
        return digest[:REDACTED_HASH_CHARS]


def record(event: Event, redact: Redactor) -> dict[str, Any]:
    """The JSON object of one log line (numpy arrays left for orjson's numpy option). Its
    fields and their order are also laid out by hand in app.predlog.singles.SingleRows.pieces:
    change both (a test compares their lines)."""
    note = event.note
    model = note.model
    assert model is not None  # only requests that reached a model are logged
    hidden = model.metadata.get("redact") or ()
    line = {
        "time": json_time(event.at),
        "request_id": event.request_id,
        "model": model.name,
        "version": model.version,
        "protocol": event.protocol,
        "route": event.route,
        "status": event.status,
        "error": note.error,
        "latency_ms": round(event.seconds * 1000, 3),
        "inputs": _inputs(note, hidden, redact),
        "answer": _answer(note),
    }
    if line["inputs"] is None and note.rows is not None:
        line["sent"] = _sent(note.rows, model.signature.feature_names, hidden, redact)
    return line


def _inputs(note: Served, hidden: Sequence[Any], redact: Redactor) -> Any:
    """The inputs as the model received them: one list of values per feature, by name, in row
    order (columns cost no Python work per value: orjson writes numpy arrays itself)."""
    arrays, model = note.arrays, note.model
    if arrays is None or model is None:
        return None
    signature = model.signature
    names = signature.feature_names
    try:
        if signature.layout is _TENSOR:
            (matrix,) = arrays.values()
            shape = matrix.shape
            if len(shape) != 2 or shape[1] != len(names):
                return None
            if not hidden and matrix.dtype.kind in "biuf":
                return _numeric_columns(names, matrix)  # the common case
            columns = dict(zip(names, np.ascontiguousarray(matrix.T), strict=True))
        else:
            columns = {name: np.ascontiguousarray(arrays[name]).reshape(-1) for name in names}
    except (KeyError, ValueError):  # tensors refused for their shape or names
        return None
    out: dict[str, Any] = {}
    for name, column in columns.items():
        if name in hidden:
            out[name] = [redact(value) for value in column]
        elif column.dtype.kind == "O":  # strings: orjson writes numeric arrays only
            out[name] = column.tolist()
        else:
            out[name] = column
    return out


def _numeric_columns(names: tuple[str, ...], matrix: np.ndarray) -> orjson.Fragment:
    """A numeric matrix's columns by feature name, as finished JSON: the columns' values written
    at once (`json_columns`) and set between the object's fixed parts. Writing each column as an
    array of its own costs several times more."""
    pieces = columns_pieces(names)
    values = chain.from_iterable(zip(pieces, json_columns(matrix), strict=False))
    return orjson.Fragment(b"".join(values) + pieces[-1])


def json_columns(matrix: np.ndarray) -> list[bytes]:
    """Each column of a numeric matrix as the JSON of its values, comma-separated (`1.5,null`):
    orjson writes the whole transposed matrix at once (`[[column],[column],...]`)."""
    text = orjson.dumps(np.ascontiguousarray(matrix.T), option=orjson.OPT_SERIALIZE_NUMPY)
    # Numbers and null hold no brackets: "],[" only ever separates two columns.
    return text[2:-2].split(b"],[")


@functools.lru_cache(maxsize=256)
def columns_pieces(names: tuple[str, ...]) -> tuple[bytes, ...]:
    """The fixed parts of `{"name":[values],...}` before, between and after the features'
    values: `{"a":[`, `],"b":[`, ..., `]}`."""
    keys = [orjson.dumps(name) for name in names]
    if not keys:
        return (b"{}",)
    return (b"{" + keys[0] + b":[", *(b"]," + key + b":[" for key in keys[1:]), b"]}")


def _sent(
    rows: Sequence[Any], names: Sequence[str], hidden: Sequence[Any], redact: Redactor
) -> list[Any] | None:
    """Rows the model refused, as they were sent (by name where their width fits), with the
    redacted features hashed; None when a redacted feature cannot be told apart."""
    out: list[Any] = []
    for row in rows:
        if isinstance(row, list) and len(row) == len(names):
            row = dict(zip(names, row, strict=True))
        if isinstance(row, dict):
            out.append({k: redact(v) if k in hidden else v for k, v in row.items()})
        elif hidden:
            return None  # which value is which feature is unknown: none can be shown
        else:
            out.append(row)
    return out


def _answer(note: Served) -> dict[str, Any] | None:
    """The answer as /predict/batch words it: predictions (and probabilities), or outputs."""
    predictions = note.predictions
    if predictions is None and note.outputs is not None and note.model is not None:
        predictions = read_outputs(note.model, note.outputs)
    if predictions is None:
        return None
    if predictions.outputs is not None:
        return {"outputs": predictions.outputs}
    answer: dict[str, Any] = {"predictions": predictions.predictions}
    if predictions.probabilities is not None:
        answer["probabilities"] = predictions.probabilities
    return answer
