"""Turns JSON rows into the arrays a model version takes, checking each value on the way.

A codec is built once per loaded version, so a request pays only for its own rows: a length or
name check in Python, one pydantic-core pass over the values (strict types, finite numbers), and
one numpy array per input. Whether null may stand for a missing value is fixed with the codec:
a version that does not take missing values pays nothing for the rule.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import chain, islice
from typing import Annotated, Any

import numpy as np
from annotated_types import Ge, Le
from pydantic import AllowInfNan, Strict, TypeAdapter, ValidationError

from ml.errors import MAX_FIELD_ERRORS, FieldError, InvalidInput, summary
from ml.signature import Feature, InputLayout, Signature

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class StrictValue:
    """How one JSON value bound for an array of some dtype is checked: a strict pydantic type
    (no coercion), what a value of the wrong type is told, and what a value out of range is told.
    """

    annotation: Any
    expected: str
    in_range: str


def strict_value(dtype: np.dtype[Any], finite: bool = True, missing: bool = False) -> StrictValue:
    """The strict type of a value for `dtype`: /predict rows and /v2 JSON tensors alike.

    Integers are bounded by the dtype. With `finite`, numbers must be finite and, below float64,
    within the dtype's range, so that no value turns into infinity on its way into the array;
    without it, NaN and Infinity pass (the Open Inference Protocol's tensor check names them).
    With `missing`, a float or string value may be null: numpy reads it into a float array as
    NaN, and RowCodec gives a null string the version's missing string.
    """
    if missing and dtype.kind in "fO":
        value = strict_value(dtype, finite)
        annotation = Annotated[value.annotation | None, Strict()]  # type: ignore[operator]
        return StrictValue(annotation, value.expected, value.in_range)
    if dtype.kind == "O":
        return StrictValue(Annotated[str, Strict()], "a string", "")
    if dtype.kind == "b":
        return StrictValue(Annotated[bool, Strict()], "true or false", "")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        bounded = Annotated[int, Strict(), Ge(int(info.min)), Le(int(info.max))]
        in_range = f"an integer from {info.min} to {info.max} ({info.dtype})"
        return StrictValue(bounded, "an integer", in_range)
    if not finite:
        return StrictValue(Annotated[float, Strict()], "a number", "")
    if dtype == np.float64:
        return StrictValue(Annotated[float, Strict(), AllowInfNan(False)], "a finite number", "")
    limit = float(np.finfo(dtype).max)
    bounded = Annotated[float, Strict(), AllowInfNan(False), Ge(-limit), Le(limit)]
    return StrictValue(bounded, "a finite number", f"a number within ±{limit:.4g} ({dtype})")


class Unusable(StrEnum):
    """Why a value of a tensor cannot be fed to a version."""

    MISSING = "missing"  # NaN, or None in a string tensor, for a version that refuses them
    INFINITE = "infinite"
    NOT_A_STRING = "not a string"


# Tensors of up to this many values are checked in Python rather than numpy.
_FEW_VALUES = 32


def unusable_value(
    array: np.ndarray, takes_missing: bool, missing_string: str
) -> tuple[int, Any, Unusable] | None:
    """The value rule for a whole input tensor of the version's dtype, the same on every
    protocol: the flat index of the first value the version cannot take, that value, and why;
    None when every value is usable. One pass over the values when they are all usable.

    Infinity is refused always. NaN (a float) and None (in a string tensor) are missing values:
    refused unless the version takes them; then a None string is replaced, in place, by the
    version's `missing_string`, as the graph was trained to see it.
    """
    if array.dtype.kind == "f":
        # A few values are checked quicker one by one than through numpy's calls.
        if array.size <= _FEW_VALUES and all(map(math.isfinite, array.ravel().tolist())):
            return None
        finite = np.isfinite(array)
        if finite.all():
            return None
        bad = np.flatnonzero(np.isinf(array) if takes_missing else ~finite)
        if not bad.size:
            return None
        value = float(array.flat[int(bad[0])])
        return int(bad[0]), value, Unusable.MISSING if math.isnan(value) else Unusable.INFINITE
    if array.dtype.kind == "O" and not all(type(v) is str for v in array.flat):
        odd = [i for i, v in enumerate(array.flat) if type(v) is not str]
        wrong = next((i for i in odd if array.flat[i] is not None), None)
        if wrong is not None:
            return wrong, array.flat[wrong], Unusable.NOT_A_STRING
        if not takes_missing:
            return odd[0], None, Unusable.MISSING
        array.flat[odd] = missing_string
    return None


# From this many rows on, reading validated rows flat beats numpy's nested-sequence reader.
_FLAT_READ_MIN_ROWS = 4
RANGE_ERRORS = frozenset({"greater_than_equal", "less_than_equal"})


class RowCodec:
    """Validates rows for one model version and lays them out as its input arrays."""

    def __init__(self, model_name: str, signature: Signature) -> None:
        self.model_name = model_name
        self.signature = signature
        self.features: tuple[Feature, ...] = signature.features
        self.names = tuple(f.name for f in self.features)
        self._name_set = frozenset(self.names)
        self._width = len(self.names)
        self._expects = f"{model_name} expects {self._width} features: {', '.join(self.names)}"
        self.missing_values = signature.missing_values
        values = [strict_value(f.dtype, missing=self.missing_values) for f in self.features]
        # Columns whose nulls become the version's missing string once read (None: no such work).
        self._string_gaps = (
            tuple(j for j, f in enumerate(self.features) if f.json_type == "string") or None
            if self.missing_values
            else None
        )
        self._expected = [value.expected for value in values]
        self._in_range = [value.in_range for value in values]
        row_type = tuple[tuple(value.annotation for value in values)]  # type: ignore[misc]
        adapter: TypeAdapter[list[tuple[Any, ...]]] = TypeAdapter(list[row_type])
        # The core validator itself: TypeAdapter.validate_python adds a layer of Python per call.
        self._validate_rows = adapter.validator.validate_python
        self._uniform_dtype = (
            self.features[0].dtype if signature.layout is InputLayout.TENSOR else None
        )
        # Fixed per version: read by every tensor request (check_arrays).
        self._shapes = self._build_tensor_shapes()
        self._dtypes = self._build_tensor_dtypes()

    def row_schema(self) -> dict[str, Any]:
        """JSON Schema of one row: an object by feature name, or a list in feature order."""
        types = [self._json_type(f) for f in self.features]
        items = [{"type": t, "title": f.name} for t, f in zip(types, self.features, strict=True)]
        return {
            "oneOf": [
                {
                    "type": "object",
                    "properties": {
                        f.name: {"type": t} for t, f in zip(types, self.features, strict=True)
                    },
                    "required": list(self.names),
                    "additionalProperties": False,
                },
                {
                    "type": "array",
                    "prefixItems": items,
                    "items": False,
                    "minItems": self._width,
                    "maxItems": self._width,
                },
            ]
        }

    def _json_type(self, feature: Feature) -> str | list[str]:
        if self.missing_values and feature.json_type in ("number", "string"):
            return [feature.json_type, "null"]
        return feature.json_type

    def _ordered(self, row: Any, loc: Loc) -> Sequence[Any]:
        if type(row) is list:
            if len(row) != self._width:
                raise InvalidInput(
                    f"{self._expects}; got {len(row)}",
                    [FieldError(loc, f"{self._expects}; got {len(row)}")],
                )
            return row
        if type(row) is dict:
            if row.keys() != self._name_set:
                raise self._name_mismatch(row, loc)
            return [row[name] for name in self.names]
        message = f"a row must be a list of {self._width} values or an object keyed by feature name"
        raise InvalidInput(f"{message}; {self._expects}", [FieldError(loc, message)])

    def _name_mismatch(self, row: dict[str, Any], loc: Loc) -> InvalidInput:
        """Each missing and unknown name, found only as far as an answer lists them: a row
        can carry any number of unknown names."""
        missing = [name for name in self.names if name not in row]
        n_unknown = len(row) - (self._width - len(missing))
        unknown = [str(name) for name in islice(self._unknown(row), MAX_FIELD_ERRORS)]
        parts = []
        if missing:
            parts.append(f"missing feature{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        if n_unknown:
            more = f" (and {n_unknown - 5} more)" if n_unknown > 5 else ""
            listed = ", ".join(unknown[:5]) + more
            parts.append(f"unknown feature{'s' if n_unknown > 1 else ''} {listed}")
        where = ".".join(map(str, loc))
        errors = [FieldError((*loc, name), "missing feature") for name in missing]
        errors += [FieldError((*loc, name), "unknown feature") for name in unknown]
        detail = f"{where}: {'; '.join(parts)}; {self._expects}"
        return InvalidInput(detail, errors, len(missing) + n_unknown)

    def _unknown(self, row: dict[str, Any]) -> Iterator[Any]:
        return (name for name in row if name not in self._name_set)

    def encode(self, rows: Sequence[Any], loc: Loc) -> dict[str, np.ndarray]:
        """Check `rows` and return the input arrays; `loc` prefixes error locations.

        `loc` is where the rows sit in the request: ("features",) for one row, whose errors then
        read ("features", "petal_width"), or ("instances",) for a batch, read
        ("instances", 3, "petal_width").
        """
        single = len(loc) == 1 and loc[0] == "features"
        if rows and type(rows[0]) is list:
            # Positional rows go straight to pydantic-core; only if it finds a row of the wrong
            # shape does the Python pass below run, to say which row and what was expected.
            try:
                values = self._validate_rows(rows)
            except ValidationError as exc:
                width = self._width
                if any(type(row) is not list or len(row) != width for row in rows):
                    values = self._check(self._order_all(rows, loc, single), loc, single)
                else:
                    raise self._invalid(exc, rows, loc, single) from None
        else:
            values = self._check(self._order_all(rows, loc, single), loc, single)
        if self._string_gaps is not None:
            values = self._fill_strings(values)
        if self._uniform_dtype is not None:
            name, n_rows = self.signature.inputs[0].name, len(values)
            if n_rows < _FLAT_READ_MIN_ROWS:
                return {name: np.array(values, dtype=self._uniform_dtype)}
            # pydantic-core has checked every row's width and values, so numpy can read them as
            # one flat run, cheaper than from nested sequences.
            count = n_rows * self._width
            flat = np.fromiter(chain.from_iterable(values), self._uniform_dtype, count)
            return {name: flat.reshape(n_rows, self._width)}
        return {
            feature.name: np.array([row[j] for row in values], dtype=feature.dtype).reshape(-1, 1)
            for j, feature in enumerate(self.features)
        }

    def _fill_strings(self, values: list[Any]) -> list[Any]:
        """Rows with each null string replaced by the version's missing string."""
        columns, fill = self._string_gaps or (), self.signature.missing_string
        return [
            [fill if v is None and j in columns else v for j, v in enumerate(row)]
            if None in row
            else row
            for row in values
        ]

    def _order_all(self, rows: Sequence[Any], loc: Loc, single: bool) -> list[Sequence[Any]]:
        return [
            self._ordered(row, loc if single else (*loc, index)) for index, row in enumerate(rows)
        ]

    def _check(self, ordered: list[Sequence[Any]], loc: Loc, single: bool) -> list[Any]:
        try:
            return self._validate_rows(ordered)
        except ValidationError as exc:
            raise self._invalid(exc, ordered, loc, single) from None

    def _invalid(
        self, exc: ValidationError, rows: Sequence[Any], loc: Loc, single: bool
    ) -> InvalidInput:
        count = exc.error_count()
        raw = exc.errors() if count <= MAX_FIELD_ERRORS else self._first_errors(rows)
        errors = [self._value_error(err, loc, single) for err in raw[:MAX_FIELD_ERRORS]]
        return InvalidInput(summary(errors, count), errors, count)

    def _first_errors(self, rows: Sequence[Any]) -> list[Any]:
        """pydantic's errors of the first rows at fault, MAX_FIELD_ERRORS at most: the rows are
        checked again a few at a time, since pydantic lists every error or none, and listing
        them all costs far more than checking."""
        step = max(1, MAX_FIELD_ERRORS // self._width)
        found: list[Any] = []
        for start in range(0, len(rows), step):
            try:
                self._validate_rows(rows[start : start + step])
            except ValidationError as exc:
                for err in exc.errors():
                    found.append({**err, "loc": (start + err["loc"][0], *err["loc"][1:])})
                if len(found) >= MAX_FIELD_ERRORS:
                    break
        return found

    def _value_error(self, err: Any, loc: Loc, single: bool) -> FieldError:
        row_index, column = err["loc"][0], err["loc"][1]
        feature = self.features[column]
        value = err["input"]
        out_of_range = err["type"] in RANGE_ERRORS or (
            err["type"] == "int_type" and _parsed_from_a_huge_integer(value)
        )
        expected = (self._in_range if out_of_range else self._expected)[column]
        where = (*loc, feature.name) if single else (*loc, row_index, feature.name)
        if value is None:
            why = (
                "only number and string features can be missing"
                if self.missing_values
                else f"model {self.model_name} does not take missing values"
            )
            return FieldError(where, f"expected {expected}, got null: {why}")
        return FieldError(where, f"expected {expected}, got {_describe(value)}")

    # -- whole tensors, as the Open Inference Protocol sends them ---------------------------

    def tensor_shapes(self) -> dict[str, tuple[int | None, ...]]:
        """The shape of each input by name, in the session's order; `None` marks a dynamic
        dimension. A feature dimension the graph leaves dynamic is fixed by metadata.json."""
        return dict(self._shapes)

    def _build_tensor_shapes(self) -> dict[str, tuple[int | None, ...]]:
        signature = self.signature
        if signature.layout is InputLayout.TENSOR:
            info = signature.inputs[0]
            return {info.name: (info.shape[0], self._width)}
        return {info.name: (info.shape[0], 1) for info in signature.inputs}

    def check_arrays(self, arrays: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        """Check whole input tensors and return them in the session's order with their row count.

        Every input must be there under its name, with the model's dtype and shape (feature
        dimension, and the batch dimension where the graph fixes it), at least one row and as
        many rows as the other inputs, finite numbers and, for a string input, strings only.
        Raises InvalidInput naming each input at fault.
        """
        shapes, dtypes = self._shapes, self._dtypes
        if arrays.keys() == shapes.keys():
            # The usual request: each input once, by its name.
            errors: list[FieldError] = []
            for name, shape in shapes.items():
                array = arrays[name]
                problem = _tensor_problem(array, dtypes[name], shape) or self._unusable(name, array)
                if problem is not None:
                    errors.append(FieldError(("inputs", name), f"input {name!r} {problem}"))
            if not errors:
                if len(shapes) == 1:
                    ((name, array),) = arrays.items()
                    return {name: array}, int(array.shape[0])
                rows = {name: int(arrays[name].shape[0]) for name in shapes}
                if len(set(rows.values())) == 1:
                    return {name: arrays[name] for name in shapes}, next(iter(rows.values()))
                counts = ", ".join(f"{name!r} has {count}" for name, count in rows.items())
                message = f"the inputs disagree on the number of rows: {counts}"
                errors.append(FieldError(("inputs",), message))
            raise _invalid_tensors(errors, len(errors))
        takes = f"{self.model_name} takes the inputs {', '.join(shapes)}"
        n_unknown = sum(name not in shapes for name in arrays)
        unknown = (name for name in arrays if name not in shapes)
        errors = [
            FieldError(("inputs", name), f"unknown input {name!r}; {takes}")
            for name in islice(unknown, MAX_FIELD_ERRORS)
        ]
        errors += [
            FieldError(("inputs", name), f"missing input {name!r}; {takes}")
            for name in shapes
            if name not in arrays
        ]
        raise _invalid_tensors(errors, len(errors) + max(0, n_unknown - MAX_FIELD_ERRORS))

    def _unusable(self, name: str, array: np.ndarray) -> str | None:
        """What breaks the value rule in `array`, naming the row and the feature."""
        found = unusable_value(array, self.missing_values, self.signature.missing_string)
        if found is None:
            return None
        index, value, why = found
        if why is Unusable.NOT_A_STRING:
            return f"takes strings; element {index} is {_describe(value)}"
        width = max(1, array.size // array.shape[0])
        feature = self.features[index % width].name if self._uniform_dtype is not None else name
        where = f"holds {_describe(value)} in row {index // width} (feature {feature!r})"
        if why is Unusable.MISSING:
            return f"{where}: model {self.model_name} does not take missing values"
        return f"{where}: values must be finite numbers"

    def _build_tensor_dtypes(self) -> dict[str, np.dtype[Any]]:
        if self._uniform_dtype is not None:
            return {self.signature.inputs[0].name: self._uniform_dtype}
        return {f.name: f.dtype for f in self.features}


def _invalid_tensors(errors: list[FieldError], count: int) -> InvalidInput:
    """The error of tensors at fault: the first five named in the detail, at most
    MAX_FIELD_ERRORS listed, `count` in all."""
    more = count - min(len(errors), 5)
    detail = "; ".join(e.msg for e in errors[:5]) + (f" (and {more} more)" if more > 0 else "")
    return InvalidInput(detail, errors, count)


def _tensor_problem(
    array: np.ndarray, dtype: np.dtype[Any], shape: tuple[int | None, ...]
) -> str | None:
    """What is wrong with one input tensor, or None."""
    if array.dtype != dtype:
        return f"takes {_dtype_text(dtype)}; got {_dtype_text(array.dtype)}"
    got = array.shape
    fits = len(got) == len(shape)
    if fits:
        for size, want in zip(got, shape, strict=True):
            if want is not None and size != want:
                fits = False
                break
    if not fits:
        wanted = [-1 if d is None else d for d in shape]
        return f"takes shape {wanted} (-1: any size); got {list(got)}"
    if got[0] < 1:
        return "has no rows: its first (batch) dimension must be at least 1"
    return None


def _dtype_text(dtype: np.dtype[Any]) -> str:
    if dtype.kind == "O":
        return "strings"
    return "booleans" if dtype.kind == "b" else f"{dtype} numbers"


def _parsed_from_a_huge_integer(value: Any) -> bool:
    """Whether `value` is how the JSON parser (orjson) reads an integer past 64 bits: a float
    with no fraction, so that the client hears "out of range", not "not an integer"."""
    return type(value) is float and value.is_integer() and abs(value) >= 2.0**63


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, float):
        return f"{value!r}"
    if value is None:
        return "null"
    if isinstance(value, list | dict):
        return f"a{'n object' if isinstance(value, dict) else ' list'}"
    return repr(value)[:40]
