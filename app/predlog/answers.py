"""The single-row answers this process logged lately, by request id, for feedback that names no
version or prediction (app.routes.feedback).

A request adds nothing of its own here: its answer is already in a block the log fills (the
columns of `SingleRows`, or a list of the general way's answers), and the block joins this book
when the log starts it. The index by request id is built when feedback asks, for the entries
that came since; a process that gets no feedback never builds it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from itertools import repeat
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ml.model import LoadedModel

# A single-row answer kept for feedback: the version that gave it, and its prediction, or the
# raw outputs it came from (Open Inference Protocol requests) to be read when feedback asks.
RecentAnswer = tuple["LoadedModel", Any, Mapping[str, Any] | None]


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
    """At least the last `capacity` answers (whole blocks go when newer ones hold as many)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._blocks: deque[Block] = deque()
        self._index: dict[str, tuple[Block, int]] = {}

    def add(self, block: Block) -> None:
        """A block whose answers count from now (it may still grow)."""
        self._blocks.append(block)

    def trim(self) -> None:
        """Drop the oldest blocks that newer ones make unneeded."""
        blocks = self._blocks
        newer = sum(len(block.ids) for block in blocks) - len(blocks[0].ids) if blocks else 0
        while blocks and newer >= self.capacity:
            self._forget(blocks.popleft())
            newer -= len(blocks[0].ids) if blocks else 0

    def get(self, request_id: str) -> RecentAnswer | None:
        self._catch_up()
        found = self._index.get(request_id)
        return found[0].answer(found[1]) if found is not None else None

    def __len__(self) -> int:
        return sum(len(block.ids) for block in self._blocks)

    def _catch_up(self) -> None:
        for block in self._blocks:
            done, size = block.indexed, len(block.ids)
            if done < size:
                places = zip(repeat(block), range(done, size), strict=False)
                self._index.update(zip(block.ids[done:size], places, strict=True))
                block.indexed = size

    def _forget(self, block: Block) -> None:
        index = self._index
        for place, request_id in enumerate(block.ids[: block.indexed]):
            found = index.get(request_id)
            if found is not None and found[0] is block and found[1] == place:
                del index[request_id]
