"""The single-row answers this process logged lately, by request id, for feedback that names no
version or prediction (app.routes.feedback).

A request adds nothing of its own here: its answer is already in a block the log fills (the
columns of `SingleRows`, or a list of the general way's answers), and the block joins this book
when the log starts it. The index by request id is built when feedback asks, for the entries
that came since; a process that gets no feedback never builds it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from itertools import repeat
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ml.model import LoadedModel
    from ml.outputs import Predictions

# A single-row answer kept for feedback: the version that gave it, and its prediction, or the
# raw outputs it came from (Open Inference Protocol requests) to be read when feedback asks.
RecentAnswer = tuple["LoadedModel", Any, Mapping[str, Any] | None]


def read_outputs(model: LoadedModel, outputs: Mapping[str, Any]) -> Predictions | None:
    """Raw outputs of an Open Inference Protocol answer, read as /predict reads them (kept raw
    until someone asks); None when the model layer cannot read them."""
    try:
        return model.decode_outputs(list(outputs.values()))
    except Exception:  # a tensor the model layer cannot read: nothing to tell, never raised
        return None


class Block(Protocol):
    """Answers in the order they came: `ids[i]` is the request id of `answer(i)`."""

    ids: list[str]
    indexed: int  # entries of `ids` in the book's index

    def answer(self, index: int) -> RecentAnswer: ...


class AnswerList:
    """Answers the general way logged (a block of its own per turn of the log's formatter)."""

    __slots__ = ("answers", "ids", "indexed")

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.answers: list[RecentAnswer] = []
        self.indexed = 0

    def add(self, request_id: str, answer: RecentAnswer) -> None:
        self.ids.append(request_id)
        self.answers.append(answer)

    def answer(self, index: int) -> RecentAnswer:
        return self.answers[index]


class RecentAnswers:
    """At least the last `capacity` answers (whole blocks go when newer ones hold as many).

    `trim` (each turn of the log's formatter) closes the blocks added since the last one:
    they grow no more, so their sizes add up once, and once indexed they are never looked at
    again by a lookup."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._blocks: deque[Block] = deque()
        self._closed_size = 0  # answers in the closed blocks still kept
        self._growing: list[Block] = []  # added since the last turn: they may still grow
        # Closed, with entries the index has not caught up to: kept blocks only, oldest first.
        self._unindexed: deque[Block] = deque()
        self._index: dict[str, tuple[Block, int]] = {}

    def add(self, block: Block) -> None:
        """A block whose answers count from now (it may grow until the turn closes)."""
        self._blocks.append(block)
        self._growing.append(block)

    def trim(self) -> None:
        """Close the blocks of the turn, then drop the oldest that newer ones make unneeded."""
        for block in self._growing:
            self._closed_size += len(block.ids)
            if block.indexed < len(block.ids):
                self._unindexed.append(block)
        self._growing = []
        blocks = self._blocks
        while len(blocks) > 1 and self._closed_size - len(blocks[0].ids) >= self.capacity:
            oldest = blocks.popleft()
            self._closed_size -= len(oldest.ids)
            self._forget(oldest)

    def find(self, request_ids: Iterable[str]) -> list[RecentAnswer | None]:
        """The answer of each request id, or None where it is not kept."""
        self._catch_up()
        index = self._index
        hits = [index.get(request_id) for request_id in request_ids]
        return [None if hit is None else hit[0].answer(hit[1]) for hit in hits]

    def get(self, request_id: str) -> RecentAnswer | None:
        return self.find((request_id,))[0]

    def __len__(self) -> int:
        return self._closed_size + sum(len(block.ids) for block in self._growing)

    def _catch_up(self) -> None:
        for block in (*self._unindexed, *self._growing):
            done, size = block.indexed, len(block.ids)
            if done < size:
                places = zip(repeat(block), range(done, size), strict=False)
                self._index.update(zip(block.ids[done:size], places, strict=True))
                block.indexed = size
        self._unindexed.clear()

    def _forget(self, block: Block) -> None:
        index = self._index
        for place, request_id in enumerate(block.ids[: block.indexed]):
            found = index.get(request_id)
            if found is not None and found[0] is block and found[1] == place:
                del index[request_id]
        block.indexed = len(block.ids)  # gone: never to be indexed
        if self._unindexed and self._unindexed[0] is block:  # the oldest there too
            self._unindexed.popleft()
