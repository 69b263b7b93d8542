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
from dataclasses import dataclass, field
from itertools import pairwise, repeat
from pathlib import Path
from typing import Any

import numpy as np

from ml.files import PROFILE_MAX_BYTES, read_bytes

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
    bin_labels: tuple[str, ...] = ()
    count_edges: np.ndarray | None = None  # numeric: [min,] edges, [past max,] NaN
    fold: np.ndarray | None = None  # counted bin -> the profile's bin
    _sorted: np.ndarray | None = None
    _order: np.ndarray | None = None
    _lookup: dict[Any, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """The profile's bins."""
        return len(self.shares)

    @property
    def counted_size(self) -> int:
        """The bins served rows are counted in (`counted`)."""
        return len(self.fold) if self.fold is not None else self.size

    def bins(self, column: np.ndarray) -> np.ndarray:
        """The profile's bin of every value of `column` (1-D), vectorised."""
        found = self.counted(column)
        return self.fold[found] if self.fold is not None else found

    def counted(self, column: np.ndarray) -> np.ndarray:
        """The bin each value is counted in: the profile's bins, except that a numeric
        feature's first and last open bins are each split at the reference's min and max, so
        that one searchsorted also counts the values outside that range (`outside`)."""
        if self.kind == NUMERIC:
            # numpy orders NaN after every number, so the NaN closing `count_edges` sends NaN
            # (and only NaN) to the last bin: one pass, no separate isnan.
            return np.searchsorted(self.count_edges, column, side="right")
        other, missing_bin = self.size - 2, self.size - 1
        if column.dtype.kind == "O":
            # A dict lookup per value, all in C (map over dict.get): strings compare far
            # slower in numpy's object loops.
            found = map(self._lookup.get, column.tolist(), repeat(other))
            index = np.fromiter(found, dtype=np.intp, count=len(column))
        elif self._sorted is not None and self._order is not None and len(self._sorted):
            at = np.minimum(np.searchsorted(self._sorted, column), len(self._sorted) - 1)
            index = np.where(self._sorted[at] == column, self._order[at], other)
        else:
            index = np.full(len(column), other, dtype=np.intp)
        unknown = np.flatnonzero(index == other)
        if len(unknown) and column.dtype.kind in "Of":
            values = column[unknown]  # None, or NaN, is missing rather than another value
            missing = np.equal(values, None) | np.not_equal(values, values)
            index[unknown[missing]] = missing_bin
        return index

    @property
    def outside(self) -> tuple[int, ...]:
        """The counted bins of values below the reference's min and above its max."""
        return (0, self.counted_size - 2) if self.fold is not None else ()

    def bin_label(self, index: int) -> str:
        """How a bin reads in reports."""
        return self.bin_labels[index]


def _numeric_labels(edges: Sequence[float]) -> tuple[str, ...]:
    shown = [f"{e:.6g}" for e in edges]
    inner = [f"[{low}, {high})" for low, high in pairwise(shown)]
    return (f"< {shown[0]}", *inner, f">= {shown[-1]}", "missing")


@dataclass(frozen=True, slots=True, eq=False)  # by identity: loaded once, cached by it
class Profile:
    """A version's profile: one binning per feature in feature order, and its answers'."""

    features: tuple[Binning, ...]
    answers: Binning | None
    rows: int
    window_sizes: tuple[int, ...]
    digest: str


def read_profile(
    version_dir: Path, feature_names: Sequence[str], within: Path | None = None
) -> Profile | None:
    """The profile beside a version, checked against its features; None without one. Read
    like every store file (ml.files): a regular file, capped, links only within `within`."""
    path = version_dir / PROFILE_FILE
    try:
        text = read_bytes(path, within=within, limit=PROFILE_MAX_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ProfileError(f"{PROFILE_FILE}: cannot read: {exc}") from exc
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"{PROFILE_FILE}: not valid JSON: {exc}") from exc
    except RecursionError:
        raise ProfileError(f"{PROFILE_FILE}: nested too deeply to read") from None
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
        count_edges, fold = np.array([*edges, np.nan]), None
        if bounds is not None:
            if not bounds[0] <= edges[0] <= edges[-1] <= bounds[1]:
                raise ProfileError(f"{PROFILE_FILE}: {where}: edges outside min and max")
            # x > max exactly when x >= the next double above max.
            above = np.nextafter(bounds[1], np.inf)
            count_edges = np.array([bounds[0], *edges, above, np.nan])
            fold = np.array([0, *range(len(edges) + 1), len(edges), len(edges) + 1])
        return Binning(
            name,
            kind,
            np.asarray(shares),
            thresholds,
            edges=np.asarray(edges),
            bin_labels=_numeric_labels(edges),
            low=None if bounds is None else bounds[0],
            high=None if bounds is None else bounds[1],
            count_edges=count_edges,
            fold=fold,
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
            bin_labels=(*(str(label) for label in labels), "other", "missing"),
            _sorted=np.asarray(values, dtype=dtype)[order],
            _order=order,
            _lookup={value: i for i, value in enumerate(values)},
        )
    raise ProfileError(f"{PROFILE_FILE}: {where}.kind must be {NUMERIC!r} or {CATEGORICAL!r}")
