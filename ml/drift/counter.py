"""Per-version counts of served rows by profile bin, added up off the request path.

A request only appends references to its input arrays and its answers (`add`, on the event
loop); once a second the drift monitor takes what accumulated (`take`) and bins it with numpy,
a chunk of rows at a time (`absorbing`), also on the loop. Every count lives in one flat vector (see
Layout), so windows are differences of two vectors, and workers add up by plain addition.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np

from ml.drift.profile import Binning, Profile
from ml.signature import InputLayout, OutputKind, Signature

# Rows held between two takes; beyond it a request's rows are left uncounted (and reported),
# so that a monitor that stopped cannot make memory grow.
MAX_PENDING_ROWS = 1_000_000

_FIRST, _SECOND = itemgetter(0), itemgetter(1)
# Rows binned at a time: arrays this small stay in the processor's caches, and the event loop,
# where binning runs, is never held for long.
CHUNK_ROWS = 4096


@dataclass(slots=True)
class Pending:
    """Served batches not binned yet, in arrival order: (input arrays, answers) and rows."""

    batches: list[tuple[Mapping[str, np.ndarray], Any]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    def chunks(self) -> Iterator[tuple[list[tuple[Mapping[str, np.ndarray], Any]], int]]:
        """Runs of batches of about CHUNK_ROWS rows (a bigger batch alone), with their rows."""
        if not self.sizes:
            return
        ends = np.cumsum(self.sizes)
        cuts = np.searchsorted(ends, np.arange(CHUNK_ROWS, ends[-1], CHUNK_ROWS)) + 1
        starts = [0, *sorted(set(cuts.tolist()) - {0, len(ends)})]
        for first, stop in zip(starts, [*starts[1:], len(ends)], strict=True):
            rows = int(ends[stop - 1] - (ends[first - 1] if first else 0))
            yield self.batches[first:stop], rows


@dataclass(frozen=True, slots=True)
class Layout:
    """Where each count sits in the flat vector: each feature's counted bins, the answers',
    then the row count."""

    offsets: tuple[int, ...]  # of each feature's bins
    answers: int | None  # offset of the answers' bins
    rows: int  # index of the row count
    size: int

    @classmethod
    def of(cls, profile: Profile) -> Layout:
        offsets, at = [], 0
        for binning in profile.features:
            offsets.append(at)
            at += binning.counted_size
        answers = None
        if profile.answers is not None:
            answers, at = at, at + profile.answers.counted_size
        return cls(tuple(offsets), answers, at, at + 1)

    def feature_bins(self, counts: np.ndarray, index: int, binning: Binning) -> np.ndarray:
        """A feature's counts in the profile's bins."""
        start = self.offsets[index]
        counted = counts[start : start + binning.counted_size]
        if binning.fold is None:
            return counted
        return np.bincount(binning.fold, weights=counted, minlength=binning.size).astype(np.int64)


class DriftCounter:
    """The counts of one loaded version; `serial` tells this load from any other."""

    def __init__(
        self, profile: Profile, signature: Signature, classes: Sequence[Any] | None = None
    ) -> None:
        self.profile = profile
        self.layout = Layout.of(profile)
        self.serial = secrets.token_hex(6)
        self.total = np.zeros(self.layout.size, dtype=np.int64)
        self.skipped_rows = 0
        self._pending = Pending()
        self._pending_rows = 0
        if signature.layout is InputLayout.TENSOR:
            name = signature.inputs[0].name
            self._columns = [(name, j) for j in range(len(signature.features))]
        else:
            self._columns = [(f.name, 0) for f in signature.features]
        self._inputs = list(dict.fromkeys(name for name, _ in self._columns))
        # A classifier whose probabilities come as one tensor, in the order of the classes the
        # profile lists, is counted by its most probable class: an argmax, cheaper than
        # looking its labels up (the same class but for exact ties).
        answers = profile.answers
        self._by_probability = (
            signature.output_kind is OutputKind.CLASSIFIER
            and answers is not None
            and classes is not None
            and list(answers.values) == list(classes)
        )
        self._answer_output = 1 if self._by_probability else 0

    # -- on the event loop ------------------------------------------------------------------

    def add(self, arrays: Mapping[str, np.ndarray], raw: Sequence[Any], n_rows: int) -> None:
        """Note a served batch: its input arrays and outputs, by reference (neither is
        changed after it is answered)."""
        if self._pending_rows + n_rows > MAX_PENDING_ROWS:
            self.skipped_rows += n_rows
            return
        self._pending.batches.append((arrays, raw[self._answer_output] if raw else None))
        self._pending.sizes.append(n_rows)
        self._pending_rows += n_rows

    def take(self) -> Pending:
        """What accumulated since the last take."""
        pending, self._pending, self._pending_rows = self._pending, Pending(), 0
        return pending

    # -- in the monitor's thread ------------------------------------------------------------

    def absorb(
        self, pending: Pending, every: int | None = None, open_rows: int = 0
    ) -> list[np.ndarray]:
        """Add `pending` to `total`. With `every`, also return copies of `total` at each point
        where the open window (holding `open_rows` rows before these) reached `every` rows, in
        arrival order: the exact ends of windows, for a monitor that sees every row."""
        return [mark for marks in self.absorbing(pending, every, open_rows) for mark in marks]

    def absorbing(
        self, pending: Pending, every: int | None = None, open_rows: int = 0
    ) -> Iterator[list[np.ndarray]]:
        """`absorb`, one chunk of about CHUNK_ROWS rows at a time: the marks of each chunk,
        for a caller that lets other work run in between."""
        for chunk, n_rows in pending.chunks():
            binned = self._binned(chunk, n_rows)
            cuts: list[int] = []
            if every is not None:
                cuts = list(range(every - open_rows % every, n_rows + 1, every))
            marks, start = [], 0
            for end in cuts:
                self._add(binned, start, end)
                marks.append(self.total.copy())
                start = end
            if start < n_rows:
                self._add(binned, start, n_rows)
            open_rows += n_rows
            yield marks

    def _add(self, binned: list[tuple[int, int, np.ndarray]], start: int, end: int) -> None:
        for offset, size, bins in binned:
            self.total[offset : offset + size] += np.bincount(bins[start:end], minlength=size)
        self.total[self.layout.rows] += end - start

    def _binned(
        self, batches: list[tuple[Mapping[str, np.ndarray], Any]], n_rows: int
    ) -> list[tuple[int, int, np.ndarray]]:
        """Each feature's counted bin for every row, and the answers', with where their
        counts go in the flat vector (offset, size)."""
        layout, profile = self.layout, self.profile
        inputs = list(map(_FIRST, batches))
        joined = {
            name: np.concatenate(list(map(itemgetter(name), inputs))).reshape(n_rows, -1)
            for name in self._inputs
        }
        binned = [
            (layout.offsets[index], binning.counted_size, binning.counted(joined[name][:, j]))
            for index, (binning, (name, j)) in enumerate(
                zip(profile.features, self._columns, strict=True)
            )
        ]
        if profile.answers is not None and layout.answers is not None:
            answers = self._answer_bins(batches, profile.answers, n_rows)
            if answers is not None:
                binned.append((layout.answers, profile.answers.counted_size, answers))
        return binned

    def _answer_bins(
        self, batches: list[tuple[Mapping[str, np.ndarray], Any]], binning: Binning, n_rows: int
    ) -> np.ndarray | None:
        parts = [answer for answer in map(_SECOND, batches) if answer is not None]
        if self._by_probability:
            probabilities = np.concatenate(parts) if parts else np.empty((0, 0))
            if len(probabilities) != n_rows or probabilities.ndim != 2:
                return None
            return probabilities.argmax(axis=1)  # categorical: counted bins are the profile's
        answers = np.concatenate([np.asarray(a).reshape(-1) for a in parts]) if parts else None
        if answers is None or len(answers) != n_rows:  # outputs of another shape: not counted
            return None
        return binning.counted(answers)
