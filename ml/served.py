"""What the model layer saw of one request, noted for whoever records requests (the prediction
log). The protocol edge puts a `Served` note in `SERVED` for the requests it wants noted; the
version that answers fills it in on the request's own task. Nothing is noted when no note is
set, and nothing is converted here: the note keeps references (input arrays, raw outputs) and
the reader turns them into JSON later, off the request path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ml.outputs import Predictions

if TYPE_CHECKING:
    from ml.model import LoadedModel


@dataclass(slots=True)
class Served:
    """The version that took the request, its inputs and its answer, as far as they got."""

    model: LoadedModel | None = None
    # The inputs as the session received them, by input name (None: refused before that).
    arrays: Mapping[str, np.ndarray] | None = None
    # The rows as the request gave them, kept when they did not fit the model.
    rows: Sequence[Any] | None = None
    predictions: Predictions | None = None
    # Raw session outputs by output name (Open Inference Protocol requests).
    outputs: Mapping[str, Any] | None = None
    # What the caller was told went wrong, when the request failed.
    error: str | None = None


SERVED: ContextVar[Served | None] = ContextVar("served", default=None)
