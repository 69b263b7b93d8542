"""The request checks every protocol makes, raising InvalidInput (a 400 under /v2,
INVALID_ARGUMENT over gRPC, a 422 on /predict/batch) with a message naming the field."""

from __future__ import annotations

from collections.abc import Collection, Container, Mapping, Sequence
from typing import Any

from ml.errors import FieldError, InvalidInput

# Far more elements than any request can carry. numpy refuses a shape whose size (zero
# dimensions aside) times its item size (8 bytes at most) passes 2**63, even for an empty array.
MAX_ELEMENTS = 2**56
# More input tensors than any model takes: a request past it is refused before any is decoded.
MAX_INPUTS = 2048
# Longer texts from a request are cut when an error message quotes them.
QUOTED_CHARS = 40


def check_input_count(count: int) -> None:
    """More input tensors than any model takes is refused before any of them is decoded."""
    if count > MAX_INPUTS:
        raise invalid(f"the request has {count} inputs; at most {MAX_INPUTS}")


def invalid(message: str, loc: tuple[str | int, ...] = ()) -> InvalidInput:
    """A request that does not fit the protocol or the model."""
    return InvalidInput(message, [FieldError(loc, message)])


def quoted(text: str) -> str:
    """`text` as an error message quotes it: repr, cut to a readable length."""
    shown = repr(text[: QUOTED_CHARS + 1])
    return shown if len(text) <= QUOTED_CHARS else shown[:-1] + "...'"


def too_many_rows(
    count: int, limit: int, loc: tuple[str | int, ...], where: str | None = None
) -> None:
    """Refuse a request of more than MAX_BATCH_ROWS rows: /predict/batch, /v2 and gRPC alike.
    The message names `where` (by default the field at `loc`)."""
    if count > limit:
        where = where or ".".join(map(str, loc))
        message = f"{where} has {count} rows; at most {limit} rows per request (MAX_BATCH_ROWS)"
        raise InvalidInput(message, [FieldError(loc, message)])


def check_shape(shape: Sequence[int], max_rows: int, name: str) -> None:
    """An input tensor's shape: no negative dimension, at most `max_rows` rows, and a size
    (zero dimensions aside) that a request could carry."""
    size = 1
    for dimension in shape:
        if dimension < 0:
            raise invalid(
                f"input {name!r} has shape {list(shape)}; dimensions must not be negative"
            )
        # Held just past the limit: a long shape of huge dimensions multiplies in constant time.
        size = min(size * (dimension or 1), MAX_ELEMENTS + 1)
    if shape and shape[0] > max_rows:
        too_many_rows(shape[0], max_rows, ("inputs", name), f"input {name!r}")
    if size > MAX_ELEMENTS:
        raise invalid(
            f"input {name!r} has shape {list(shape)}; its dimensions (zeros aside) multiply "
            f"past {MAX_ELEMENTS} elements, more than a request can carry"
        )


def not_given_twice(name: str, seen: Container[str], what: str = "input") -> None:
    """Each input (or output) is named once in a request."""
    if name in seen:
        raise invalid(f"{what} {name!r} is given twice")


def unsupported(parameters: Mapping[str, Any] | None, where: str, keys: Collection[str]) -> None:
    """Refuse the protocol parameters this server does not implement (shared memory,
    classification)."""
    if parameters:
        for key in keys:
            if key in parameters:
                raise invalid(f"{where}: parameter {key!r} is not supported by this server")
