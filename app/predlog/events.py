"""One logged request, and the JSON it becomes. Formatted on the event loop by the log's
formatter task, between requests and in slices (app.predlog.log): a worker thread doing this
Python work would hold the interpreter lock for long stretches, and the loop would wait for it
after every socket call; the sinks' threads only move finished bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml.served import Served
from ml.signature import InputLayout

REDACTED_HASH_CHARS = 32


@dataclass(frozen=True, slots=True)
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


class Clock:
    """RFC 3339 UTC times with milliseconds; the seconds part is formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self, seconds: float) -> str:
        whole = int(seconds)
        if whole != self._second:
            self._second = whole
            self._text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        return f"{self._text}.{int((seconds - whole) * 1000):03d}Z"


def record(event: Event, inputs: list[Any] | None, clock: Clock) -> dict[str, Any]:
    """The JSON object of one log line (numpy values left for orjson's numpy option); `inputs`
    as `inputs()` gave them."""
    note = event.note
    model = note.model
    assert model is not None  # only requests that reached a model are logged
    return {
        "time": clock(event.at),
        "request_id": event.request_id,
        "model": model.name,
        "version": model.version,
        "protocol": event.protocol,
        "route": event.route,
        "status": event.status,
        "error": note.error,
        "latency_ms": round(event.seconds * 1000, 3),
        "inputs": inputs,
        "answer": _answer(note),
    }


def inputs(note: Served, redact: Redactor, start: int, end: int) -> list[Any] | None:
    """Rows `start` to `end` of the request, one object per row by feature name; rows that did
    not reach the model as they were sent (positional rows by name where their width fits).
    Features metadata.json lists in `redact` are replaced by `redact`'s hash."""
    model = note.model
    assert model is not None
    names = model.signature.feature_names
    hidden = model.metadata.get("redact") or ()
    rows: list[dict[Any, Any]] | None = None
    if note.arrays is not None:
        rows = _rows_of_arrays(note.arrays, model.signature.layout, names, start, end)
    if rows is None and note.rows is not None:
        rows = _rows_as_sent(note.rows[start:end], names, bool(hidden))
    if rows is None:
        return None
    for row in rows:
        for name in hidden:
            if name in row:
                row[name] = redact(row[name])
    return rows


def _rows_of_arrays(
    arrays: Mapping[str, np.ndarray],
    layout: InputLayout,
    names: Sequence[str],
    start: int,
    end: int,
) -> list[dict[Any, Any]] | None:
    try:
        if layout is InputLayout.TENSOR:
            (matrix,) = arrays.values()
            if matrix.ndim != 2 or matrix.shape[1] != len(names):
                return None
            return [dict(zip(names, row, strict=True)) for row in matrix[start:end]]
        columns = [arrays[name][start:end].reshape(-1) for name in names]
        return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    except (KeyError, ValueError):  # tensors refused for their shape or names: as sent below
        return None


def _rows_as_sent(rows: Sequence[Any], names: Sequence[str], hiding: bool) -> list[Any] | None:
    out: list[Any] = []
    for row in rows:
        if isinstance(row, dict):
            out.append(dict(row))
        elif isinstance(row, list) and len(row) == len(names):
            out.append(dict(zip(names, row, strict=True)))
        elif hiding:
            return None  # which value is which feature is unknown: none can be shown
        else:
            out.append({"row": row})
    return out


def _answer(note: Served) -> dict[str, Any] | None:
    """The answer as /predict/batch words it: predictions (and probabilities), or outputs."""
    predictions = note.predictions
    if predictions is None and note.outputs is not None and note.model is not None:
        try:  # the protocol's raw tensors, read as /predict reads them
            predictions = note.model._decode(list(note.outputs.values()))
        except Exception:  # a tensor the model layer cannot read: left out, never raised
            return None
    if predictions is None:
        return None
    if predictions.outputs is not None:
        return {"outputs": predictions.outputs}
    answer: dict[str, Any] = {"predictions": predictions.predictions}
    if predictions.probabilities is not None:
        answer["probabilities"] = predictions.probabilities
    return answer
