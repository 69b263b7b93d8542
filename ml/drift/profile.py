"""`profile.json`: what a version's features and answers looked like on its reference data, read
once at load into binning plans the counter applies with numpy alone.

A numeric feature is binned by its edges: `searchsorted(edges, x, side="right")` puts x below
the first edge in bin 0 and x at or above the last in the last open bin; NaN has a bin of its
own after those. A categorical feature (strings, or a classifier's classes) has one bin per
listed value, then "other", then "missing". The README describes the file.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROFILE_FILE = "profile.json"
FORMAT = 1
NUMERIC = "numeric"
CATEGORICAL = "categorical"


class ProfileError(ValueError):
    """profile.json cannot be read, or does not describe the version beside it."""


@dataclass(frozen=True, slots=True)
class Binning:
    """One profiled quantity (a feature, or the answers) and how its values fall into bins."""

    name: str
    kind: str
    shares: np.ndarray
    thresholds: tuple[float, ...]
    edges: np.ndarray | None = None  # numeric
    low: float | None = None  # numeric: the reference's range
    high: float | None = None
    values: tuple[Any, ...] = ()  # categorical, in bin order
    labels: tuple[str, ...] = ()
    complete: bool = True  # categorical: the values listed are all the reference held
    _sorted: np.ndarray | None = None
    _order: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.shares)

    def bins(self, column: np.ndarray) -> np.ndarray:
        """The bin of every value of `column` (1-D), vectorised."""
        if self.kind == NUMERIC:
            assert self.edges is not None
            index = np.searchsorted(self.edges, column, side="right")
            if column.dtype.kind == "f":
                missing = np.isnan(column)
                if missing.any():
                    index[missing] = self.size - 1
            return index
        assert self._sorted is not None and self._order is not None
        other, missing_bin = self.size - 2, self.size - 1
        if column.dtype.kind == "O":
            missing = np.equal(column, None) | np.not_equal(column, column)
            if missing.any() and len(self._sorted):
                column = np.where(missing, self._sorted[0], column)
        else:
            missing = None
        if not len(self._sorted):
            index = np.full(len(column), other)
        else:
            at = np.minimum(np.searchsorted(self._sorted, column), len(self._sorted) - 1)
            index = np.where(self._sorted[at] == column, self._order[at], other)
        if missing is not None:
            index[missing] = missing_bin
        return index

    def out_of_range(self, column: np.ndarray) -> np.ndarray | None:
        """Which values lie outside the reference's range (numeric only; NaN is not)."""
        if self.kind != NUMERIC or self.low is None or self.high is None:
            return None
        return (column < self.low) | (column > self.high)

    def bin_label(self, index: int) -> str:
        """How a bin reads in reports."""
        if index == self.size - 1:
            return "missing"
        if self.kind == CATEGORICAL:
            return self.labels[index] if index < len(self.labels) else "other"
        assert self.edges is not None
        edges = [f"{e:.6g}" for e in self.edges]
        if index == 0:
            return f"< {edges[0]}"
        if index == len(edges):
            return f">= {edges[-1]}"
        return f"[{edges[index - 1]}, {edges[index]})"


@dataclass(frozen=True, slots=True)
class Profile:
    """A version's profile: one binning per feature in feature order, and its answers'."""

    features: tuple[Binning, ...]
    answers: Binning | None
    rows: int
    window_sizes: tuple[int, ...]
    digest: str


def read_profile(version_dir: Path, feature_names: Sequence[str]) -> Profile | None:
    """The profile beside a version, checked against its features; None without one."""
    path = version_dir / PROFILE_FILE
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ProfileError(f"{PROFILE_FILE}: cannot read: {exc}") from exc
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"{PROFILE_FILE}: not valid JSON: {exc}") from exc
    return parse_profile(data, feature_names, hashlib.sha256(text).hexdigest()[:16])


def parse_profile(data: Any, feature_names: Sequence[str], digest: str = "") -> Profile:
    """A profile from the JSON of profile.json; raises ProfileError saying what is wrong."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ProfileError(f'{PROFILE_FILE}: must be a JSON object with "format": {FORMAT}')
    rows = data.get("rows")
    sizes = data.get("window_sizes")
    if not _positive_int(rows):
        raise ProfileError(f"{PROFILE_FILE}: 'rows' must be a positive integer")
    if (
        not isinstance(sizes, list)
        or not sizes
        or not all(_positive_int(s) for s in sizes)
        or sorted(set(sizes)) != sizes
    ):
        raise ProfileError(f"{PROFILE_FILE}: 'window_sizes' must be increasing positive integers")
    features = data.get("features")
    if not isinstance(features, list):
        raise ProfileError(f"{PROFILE_FILE}: 'features' must be a list")
    named = [f.get("name") if isinstance(f, dict) else None for f in features]
    if named != list(feature_names):
        raise ProfileError(
            f"{PROFILE_FILE}: profiles the features {named}, the model takes {list(feature_names)}"
        )
    binnings = tuple(_binning(f, len(sizes), f"features.{f['name']}") for f in features)
    answers = data.get("answers")
    return Profile(
        features=binnings,
        answers=None if answers is None else _binning(answers, len(sizes), "answers"),
        rows=int(rows),
        window_sizes=tuple(int(s) for s in sizes),
        digest=digest,
    )


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _numbers(value: Any, where: str, length: int | None = None) -> list[float]:
    if (
        not isinstance(value, list)
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or not all(math.isfinite(v) for v in value)
        or (length is not None and len(value) != length)
    ):
        count = f"{length} " if length is not None else ""
        raise ProfileError(f"{PROFILE_FILE}: {where} must be a list of {count}finite numbers")
    return [float(v) for v in value]


def _binning(data: Any, n_sizes: int, where: str) -> Binning:
    if not isinstance(data, dict):
        raise ProfileError(f"{PROFILE_FILE}: {where} must be an object")
    kind = data.get("kind")
    thresholds = tuple(_numbers(data.get("thresholds"), f"{where}.thresholds", n_sizes))
    name = str(data.get("name", "answers"))
    if kind == NUMERIC:
        edges = _numbers(data.get("edges"), f"{where}.edges")
        if not edges or sorted(set(edges)) != edges:
            raise ProfileError(f"{PROFILE_FILE}: {where}.edges must be increasing, at least one")
        shares = _numbers(data.get("shares"), f"{where}.shares", len(edges) + 2)
        low, high = data.get("min"), data.get("max")
        bounds = None if low is None else _numbers([low, high], f"{where}.min and max")
        return Binning(
            name,
            kind,
            np.asarray(shares),
            thresholds,
            edges=np.asarray(edges),
            low=None if bounds is None else bounds[0],
            high=None if bounds is None else bounds[1],
        )
    if kind == CATEGORICAL:
        values = data.get("values")
        if not isinstance(values, list) or not (
            all(isinstance(v, str) for v in values)
            or all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        ):
            raise ProfileError(f"{PROFILE_FILE}: {where}.values must be strings or integers")
        if len(set(values)) != len(values):
            raise ProfileError(f"{PROFILE_FILE}: {where}.values repeat")
        shares = _numbers(data.get("shares"), f"{where}.shares", len(values) + 2)
        labels = data.get("labels") or [str(v) for v in values]
        if not isinstance(labels, list) or len(labels) != len(values):
            raise ProfileError(f"{PROFILE_FILE}: {where}.labels must name every value")
        dtype = object if all(isinstance(v, str) for v in values) and values else np.int64
        order = np.argsort(np.asarray(values, dtype=dtype), kind="stable")
        return Binning(
            name,
            kind,
            np.asarray(shares),
            thresholds,
            values=tuple(values),
            labels=tuple(str(label) for label in labels),
            complete=bool(data.get("complete", True)),
            _sorted=np.asarray(values, dtype=dtype)[order],
            _order=order,
        )
    raise ProfileError(f"{PROFILE_FILE}: {where}.kind must be {NUMERIC!r} or {CATEGORICAL!r}")
