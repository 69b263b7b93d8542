"""Turns JSON rows into the arrays a model version takes, checking each value on the way.

A codec is built once per loaded version, so a request pays only for its own rows: a length or
name check in Python, one pydantic-core pass over the values (strict types, finite numbers), and
one numpy array per input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import AllowInfNan, Strict, TypeAdapter, ValidationError

from ml.errors import FieldError, InvalidInput
from ml.signature import Feature, InputLayout, JsonType, Signature

Loc = tuple[str | int, ...]

_VALUE_TYPES: dict[JsonType, Any] = {
    "number": Annotated[float, Strict(), AllowInfNan(False)],
    "integer": Annotated[int, Strict()],
    "string": Annotated[str, Strict()],
    "boolean": Annotated[bool, Strict()],
}

_EXPECTED: dict[JsonType, str] = {
    "number": "a finite number",
    "integer": "an integer",
    "string": "a string",
    "boolean": "true or false",
}


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
        row_type = tuple[tuple(_VALUE_TYPES[f.json_type] for f in self.features)]  # type: ignore[misc]
        self._rows_adapter: TypeAdapter[list[tuple[Any, ...]]] = TypeAdapter(list[row_type])
        self._uniform_dtype = (
            self.features[0].dtype if signature.layout is InputLayout.TENSOR else None
        )

    def row_schema(self) -> dict[str, Any]:
        """JSON Schema of one row: an object by feature name, or a list in feature order."""
        items = [{"type": f.json_type, "title": f.name} for f in self.features]
        return {
            "oneOf": [
                {
                    "type": "object",
                    "properties": {f.name: {"type": f.json_type} for f in self.features},
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
                raise InvalidInput(self._name_problem(row, loc), self._name_errors(row, loc))
            return [row[name] for name in self.names]
        message = f"a row must be a list of {self._width} values or an object keyed by feature name"
        raise InvalidInput(f"{message}; {self._expects}", [FieldError(loc, message)])

    def _name_problem(self, row: dict[str, Any], loc: Loc) -> str:
        return "; ".join(err.msg for err in self._name_errors(row, loc)) + f"; {self._expects}"

    def _name_errors(self, row: dict[str, Any], loc: Loc) -> list[FieldError]:
        missing = [name for name in self.names if name not in row]
        unknown = [str(name) for name in row if name not in self._name_set]
        errors = [FieldError((*loc, name), "missing feature") for name in missing]
        errors += [FieldError((*loc, name), "unknown feature") for name in unknown]
        return errors

    def encode(self, rows: Sequence[Any], loc: Loc) -> dict[str, np.ndarray]:
        """Check `rows` and return the input arrays; `loc` prefixes error locations.

        `loc` is where the rows sit in the request: ("features",) for one row, whose errors then
        read ("features", "petal_width"), or ("instances",) for a batch, read
        ("instances", 3, "petal_width").
        """
        single = len(loc) == 1 and loc[0] == "features"
        ordered = [
            self._ordered(row, loc if single else (*loc, index)) for index, row in enumerate(rows)
        ]
        try:
            values = self._rows_adapter.validate_python(ordered)
        except ValidationError as exc:
            errors = [self._value_error(err, loc, single) for err in exc.errors()]
            raise InvalidInput(
                "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors[:5]), errors
            ) from None
        if self._uniform_dtype is not None:
            return {self.signature.inputs[0].name: np.array(values, dtype=self._uniform_dtype)}
        return {
            feature.name: np.array([row[j] for row in values], dtype=feature.dtype).reshape(-1, 1)
            for j, feature in enumerate(self.features)
        }

    def _value_error(self, err: Any, loc: Loc, single: bool) -> FieldError:
        row_index, column = err["loc"][0], err["loc"][1]
        feature = self.features[column]
        where = (*loc, feature.name) if single else (*loc, row_index, feature.name)
        return FieldError(
            where, f"expected {_EXPECTED[feature.json_type]}, got {_describe(err['input'])}"
        )


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
