"""Valid rows for a model, built from what the server says it takes and from samples.json.

`GET /models/{name}` names the default version's features and their JSON types; the Open
Inference Protocol's `GET /v2/models/{name}/versions/{v}` gives every version's input tensors,
which is how a version other than the default is checked to take the same rows. A version's
`samples.json` holds rows the data scientist signed off: where it is given,
those rows are sent; otherwise rows are drawn at random, by type, from a fixed seed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

# What a string feature gets when neither samples.json nor the graph says which values it takes.
# A model that one-hot encodes the column with handle_unknown="ignore" takes any.
STRING_VALUES = ("a", "b", "c")
V2_TYPES = {
    "FP32": "number",
    "FP64": "number",
    "INT64": "integer",
    "BYTES": "string",
    "BOOL": "boolean",
}

Row = list[Any] | dict[str, Any]


class RowError(ValueError):
    """The model or its samples cannot be turned into rows; the message says why."""


@dataclass(frozen=True)
class Feature:
    name: str
    type: str  # JSON type: number, integer, string or boolean


@dataclass(frozen=True)
class TensorInput:
    """One input tensor as the Open Inference Protocol describes it."""

    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: any size


@dataclass(frozen=True)
class ModelInputs:
    """What one version of a model takes: its features, and the tensors they are laid out in."""

    model: str
    version: int
    features: tuple[Feature, ...]
    tensors: tuple[TensorInput, ...]
    named: bool = True  # False: the features' names are unknown, rows are sent as lists

    @property
    def per_feature(self) -> bool:
        """One [N, 1] tensor per feature (a ColumnTransformer), rather than one [N, F] tensor."""
        return len(self.tensors) > 1

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)


def _get(client: httpx.Client, path: str) -> dict[str, Any]:
    response = client.get(path)
    if response.status_code != 200:
        raise RowError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
    body: dict[str, Any] = response.json()
    return body


def _tensors(client: httpx.Client, model: str, version: int) -> tuple[TensorInput, ...]:
    body = _get(client, f"/v2/models/{model}/versions/{version}")
    return tuple(
        TensorInput(t["name"], t["datatype"], tuple(int(d) for d in t["shape"]))
        for t in body["inputs"]
    )


def describe(client: httpx.Client, model: str, version: int | None = None) -> ModelInputs:
    """What `version` of `model` takes (its default version when None), from the server."""
    detail = _get(client, f"/models/{model}")
    described = int(detail["version"])
    features = tuple(Feature(f["name"], f["type"]) for f in detail["features"])
    tensors = _tensors(client, model, described)
    if version is None or version == described:
        return ModelInputs(model, described, features, tensors)
    other = _tensors(client, model, version)
    if other == tensors:
        return ModelInputs(model, version, features, other)
    # GET /models describes the default version only; another version that takes other tensors
    # is described by them alone: rows are then sent as lists, in tensor order.
    features = _features_of(other)
    named = len(other) > 1 or other[0].shape[-1] == 1
    return ModelInputs(model, version, features, other, named)


def _features_of(tensors: Sequence[TensorInput]) -> tuple[Feature, ...]:
    def json_type(t: TensorInput) -> str:
        if t.datatype not in V2_TYPES:
            raise RowError(f"input {t.name!r} has datatype {t.datatype}, which rows cannot carry")
        return V2_TYPES[t.datatype]

    if len(tensors) == 1 and tensors[0].shape[-1] != 1:
        width = tensors[0].shape[-1]
        if width < 1:
            raise RowError(f"input {tensors[0].name!r} does not say how many features it takes")
        kind = json_type(tensors[0])
        return tuple(Feature(f"{tensors[0].name}[{i}]", kind) for i in range(width))
    return tuple(Feature(t.name, json_type(t)) for t in tensors)


def read_samples(path: Path) -> list[Row]:
    """The `instances` of a samples.json file."""
    try:
        data = json.loads(path.read_text())
        instances = data["instances"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RowError(f"{path}: not a samples.json with an 'instances' list ({exc})") from exc
    if not isinstance(instances, list) or not instances:
        raise RowError(f"{path}: 'instances' must be a non-empty list of rows")
    return instances


def find_samples(store: Path, model: str, version: int) -> Path | None:
    """`<store>/<model>/<version>/samples.json`, if the version has one."""
    path = store / model / str(version) / "samples.json"
    return path if path.is_file() else None


def check_rows(inputs: ModelInputs, rows: Sequence[Row], source: str) -> None:
    """Refuse rows that do not fit the version, naming the first that does not."""
    names = set(inputs.names)
    for index, row in enumerate(rows):
        if isinstance(row, list):
            if len(row) != len(inputs.features):
                raise RowError(
                    f"{source} row {index} has {len(row)} values; "
                    f"{inputs.model} v{inputs.version} takes {len(inputs.features)}"
                )
        elif isinstance(row, dict):
            if not inputs.named:
                raise RowError(f"{source} row {index} is keyed by name; this version takes lists")
            if set(row) != names:
                raise RowError(
                    f"{source} row {index} has the keys {sorted(row)}; "
                    f"{inputs.model} v{inputs.version} takes {sorted(names)}"
                )
        else:
            raise RowError(f"{source} row {index} is neither a list nor an object")


def _value(kind: str, rng: np.random.Generator, strings: Sequence[str]) -> Any:
    if kind == "integer":
        return int(rng.integers(0, 10))
    if kind == "string":
        return strings[int(rng.integers(len(strings)))]
    if kind == "boolean":
        return bool(rng.random() < 0.5)
    return round(float(rng.uniform(0.0, 10.0)), 3)


def generate_rows(
    inputs: ModelInputs,
    count: int,
    seed: int = 0,
    categories: Mapping[str, Sequence[str]] | None = None,
) -> list[Row]:
    """`count` rows drawn at random by feature type: objects keyed by feature name when the
    server named the features, lists otherwise. A string feature draws from its `categories`
    where given (see loadtest.categories), else from STRING_VALUES."""
    rng = np.random.default_rng(seed)
    strings = [(categories or {}).get(f.name) or STRING_VALUES for f in inputs.features]
    rows: list[Row] = []
    for _ in range(count):
        values = [_value(f.type, rng, s) for f, s in zip(inputs.features, strings, strict=True)]
        rows.append(dict(zip(inputs.names, values, strict=True)) if inputs.named else values)
    return rows


def as_list(inputs: ModelInputs, row: Row) -> list[Any]:
    """A row's values in feature order."""
    return [row[name] for name in inputs.names] if isinstance(row, dict) else list(row)
