"""The one error tree of the model layer.

ServingError
├── ModelNotFound     no such model, or no such version of it
├── ModelNotReady     the version exists but is not serving (LOADING, FAILED, UNLOADING)
├── InvalidInput      the rows do not fit the model's signature; `errors` says where and why
├── Overloaded        the batching queue is full; try again after `retry_after` seconds
├── StoreUnavailable  the store folder is missing or unreadable (what is loaded keeps serving)
└── InferenceFailed   onnxruntime rejected rows that passed validation

The HTTP layer maps each class to a status code in one table; nothing here knows HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice


@dataclass(frozen=True, slots=True)
class FieldError:
    """Where a request went wrong (`loc`, as in pydantic) and what was expected there."""

    loc: tuple[str | int, ...]
    msg: str


class ServingError(Exception):
    """Base of every error the model layer raises on purpose."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ModelNotFound(ServingError):
    """The model, or the version asked for, is not in the store."""


class ModelNotReady(ServingError):
    """The version exists but cannot serve now; `retry_after` is set while it is loading."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


# The most field errors one InvalidInput keeps: a request can hold millions of faults, and
# listing (or even finding) them all would cost more than the request is worth.
MAX_FIELD_ERRORS = 100


class InvalidInput(ServingError):
    """The request does not fit the model; `errors` lists the fields at fault, the first
    MAX_FIELD_ERRORS of them, and `count` says how many there are in all."""

    def __init__(
        self, detail: str, errors: Iterable[FieldError] = (), count: int | None = None
    ) -> None:
        super().__init__(detail)
        self.errors = list(islice(errors, MAX_FIELD_ERRORS))
        self.count = len(self.errors) if count is None else max(count, len(self.errors))


def summary(errors: Sequence[FieldError], count: int, shown: int = 5) -> str:
    """The first `shown` errors as one line, `loc: msg; loc: msg (and N more)`: a detail whose
    length does not grow with the request."""
    parts = [f"{'.'.join(map(str, e.loc)) or 'body'}: {e.msg}" for e in errors[:shown]]
    more = count - min(len(errors), shown)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


class Overloaded(ServingError):
    """The batching queue of a version is full."""

    def __init__(self, detail: str, retry_after: float = 1.0) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class InferenceFailed(ServingError):
    """onnxruntime failed on rows that passed validation (a model bug, not a client one)."""


class StoreUnavailable(ServingError):
    """The store folder itself is missing or unreadable."""
