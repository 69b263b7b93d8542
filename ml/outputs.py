"""Turns a session's raw outputs into the answer for each row: predictions with probabilities
(classifiers), with an outlier flag and a score (anomaly detectors) or with distances
(clustering), one number or one per target (regressors), or named outputs (anything else)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from itertools import repeat
from typing import Any, ClassVar

import numpy as np

from ml.signature import OutputKind, Signature


class VocabularyError(ValueError):
    """Class names that do not fit the classes of the graph."""


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """How a classifier names its classes in answers, fixed at load.

    `classes` are the graph's class values in probability-column order; `keys` name them in
    `probabilities`; `names` maps a predicted class to its name in `prediction`, or is None when
    the class is answered as it is (string classes, or integer classes without labels).
    """

    classes: tuple[Any, ...]
    keys: tuple[str, ...]
    names: Mapping[Any, Any] | None
    # What a client may call a class (its name, its graph value, that value as a string) -> the
    # class as answers give it; built here so that reading a client's class costs one lookup.
    _answered: dict[Any, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        answered = self.classes if self.names is None else self.keys
        # A name wins over a class value spelled the same: it is what answers say.
        table: dict[Any, Any] = dict(zip(self.keys, answered, strict=True))
        for value, answer in zip(self.classes, answered, strict=True):
            table.setdefault(value, answer)
            table.setdefault(str(value), answer)
        object.__setattr__(self, "_answered", table)

    @classmethod
    def build(cls, classes: Sequence[Any], labels: Sequence[str] | None) -> Vocabulary:
        """Class i is called labels[i] when labels are given, else by its own value."""
        if labels is not None and len(labels) != len(classes):
            raise VocabularyError(
                f"metadata.json lists {len(labels)} labels but the model has {len(classes)} "
                f"classes {list(classes)}"
            )
        if len(set(classes)) != len(classes):
            raise VocabularyError(f"the model's classes {list(classes)} are not distinct")
        keys = tuple(str(c) for c in (classes if labels is None else labels))
        if len(set(keys)) != len(keys):
            raise VocabularyError(f"class names {list(keys)} are not distinct")
        if labels is None or list(labels) == list(classes):
            return cls(tuple(classes), keys, None)
        return cls(tuple(classes), keys, dict(zip(classes, keys, strict=True)))

    def answered(self, value: Any) -> Any | None:
        """The class that `value` names, as answers give it: `value` may be the class's name or
        its value in the graph (`30` or `"30"` for a class 30 named "virginica"); None when it
        names no class. Booleans and floats are never classes."""
        if isinstance(value, bool | float):
            return None
        found = self._answered.get(value)
        return self._answered.get(str(value)) if found is None else found

    def name(self, predicted: list[Any]) -> list[Any]:
        """`predicted` classes as answered; a class the graph did not declare is a model bug."""
        if self.names is None:
            return predicted
        try:
            return list(map(self.names.__getitem__, predicted))
        except KeyError as exc:
            raise VocabularyError(
                f"the model predicted class {exc.args[0]!r}, which is not one of its classes "
                f"{list(self.classes)}"
            ) from None


@dataclass(slots=True)  # not frozen: a frozen dataclass costs more to build, once per request
class Predictions:
    """The answer for a batch of rows, in request order.

    `predictions` (with `probabilities` for a classifier, and a dict by target per row for a
    regressor of several targets) for recognised models, or `outputs` by output name for any
    other model. Anomaly detectors and clustering models answer ScoredPredictions.
    """

    predictions: list[Any] | None = None
    probabilities: list[dict[str, float]] | None = None
    outputs: dict[str, Any] | None = None
    # Read on every answer but set only by ScoredPredictions: as class attributes here, they
    # cost a classifier's or regressor's answer nothing to build.
    outliers: ClassVar[list[bool] | None] = None
    scores: ClassVar[list[float] | None] = None
    distances: ClassVar[list[dict[str, float]] | None] = None

    @property
    def decided(self) -> bool:
        """Whether `predictions` are decisions (classes, outlier labels, clusters), compared
        for equality, rather than numbers compared within a tolerance."""
        return (
            self.probabilities is not None
            or self.outliers is not None
            or self.distances is not None
        )


@dataclass(slots=True)
class ScoredPredictions(Predictions):
    """An anomaly detector's answer (`predictions` -1/1 with `outliers` and `scores`) or a
    clustering model's (`predictions` the clusters, with `distances` keyed by cluster index)."""

    outliers: list[bool] | None = None  # type: ignore[misc]
    scores: list[float] | None = None  # type: ignore[misc]
    distances: list[dict[str, float]] | None = None  # type: ignore[misc]


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


def decode(signature: Signature, vocabulary: Vocabulary | None, raw: Sequence[Any]) -> Predictions:
    """Read the session outputs of a batch according to the model's output kind; a classifier's
    classes are named by its `vocabulary` (set for every classifier at load)."""
    kind = signature.output_kind
    if kind is OutputKind.CLASSIFIER and vocabulary is not None:
        # One dict per row, built by map() without a Python frame per row (cheaper than a
        # comprehension on batches); widths were checked at load, so zip needs no strict check.
        rows = np.asarray(raw[1]).tolist()
        probabilities = list(map(dict, map(zip, repeat(vocabulary.keys), rows)))
        return Predictions(vocabulary.name(_flat_list(raw[0])), probabilities)
    if kind is OutputKind.CLASSIFIER_ZIPMAP and vocabulary is not None:
        classes, keys = vocabulary.classes, vocabulary.keys
        probabilities = [
            dict(zip(keys, map(float, map(row.__getitem__, classes)), strict=True))
            for row in raw[1]
        ]
        return Predictions(vocabulary.name(_flat_list(raw[0])), probabilities)
    if kind is OutputKind.REGRESSOR:
        values = np.asarray(raw[0])
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        return Predictions(predictions=values.tolist())
    if kind is OutputKind.MULTI_REGRESSOR and signature.targets is not None:
        # The output's width was checked against the targets at load.
        rows = np.asarray(raw[0]).tolist()
        return Predictions(predictions=list(map(dict, map(zip, repeat(signature.targets), rows))))
    if kind is OutputKind.ANOMALY:
        labels = _flat_list(raw[0])
        return ScoredPredictions(
            predictions=labels,
            outliers=[label == -1 for label in labels],
            scores=_flat_list(raw[1]),
        )
    if kind is OutputKind.CLUSTERING:
        rows = np.asarray(raw[1]).tolist()
        keys = cluster_keys(len(rows[0]) if rows else 0)
        return ScoredPredictions(
            predictions=_flat_list(raw[0]), distances=list(map(dict, map(zip, repeat(keys), rows)))
        )
    return Predictions(
        outputs={
            info.name: to_jsonable(value)
            for info, value in zip(signature.outputs, raw, strict=True)
        }
    )


@cache
def cluster_keys(count: int) -> tuple[str, ...]:
    """How the distances to `count` clusters are keyed: each cluster's index as a string."""
    return tuple(map(str, range(count)))
