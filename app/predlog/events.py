"""One logged request, and the JSON it becomes. Built in the sinks' threads, never on the loop:
the request path hands over references only (its input arrays and its answer)."""

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


def timestamp(seconds: float) -> str:
    """RFC 3339 UTC time with milliseconds."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{whole}.{int(seconds % 1 * 1000):03d}Z"


def record(event: Event, redact: Redactor) -> dict[str, Any]:
    """The JSON object of one log line (numpy values left for orjson's numpy option)."""
    note = event.note
    model = note.model
    assert model is not None  # only requests that reached a model are logged
    hidden = model.metadata.get("redact") or ()
    return {
        "time": timestamp(event.at),
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


def _inputs(note: Served, hidden: Sequence[Any], redact: Redactor) -> list[Any] | None:
    """One object per row, by feature name; rows that never reached the model as they were
    sent (positional rows by name where their width fits)."""
    model = note.model
    assert model is not None
    names = model.signature.feature_names
    rows: list[dict[Any, Any]] | None = None
    if note.arrays is not None:
        rows = _rows_of_arrays(note.arrays, model.signature.layout, names)
    if rows is None and note.rows is not None:
        rows = _rows_as_sent(note.rows, names, bool(hidden))
    if rows is None:
        return None
    for row in rows:
        for name in hidden:
            if name in row:
                row[name] = redact(row[name])
    return rows


def _rows_of_arrays(
    arrays: Mapping[str, np.ndarray], layout: InputLayout, names: Sequence[str]
) -> list[dict[Any, Any]] | None:
    try:
        if layout is InputLayout.TENSOR:
            (matrix,) = arrays.values()
            if matrix.ndim != 2 or matrix.shape[1] != len(names):
                return None
            return [dict(zip(names, row, strict=True)) for row in matrix]
        columns = [arrays[name].reshape(-1) for name in names]
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
