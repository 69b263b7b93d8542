"""Adaptive micro-batching: concurrent single-row requests to one version share a session run.

The first row to find the batcher idle leads: it yields to the event loop once, so that requests
already read join it, and runs whatever is queued as one batch. Rows that arrive while a run is
under way queue up and a drainer task runs them as the next batches, one after another. Only
while batches hold more than one row (concurrent load) does the drainer wait up to
`max_delay_ms` for a batch to fill, so a lone client never pays that delay. A queue longer than
`max_queue_size` rows refuses new rows at once (Overloaded: a 503 with Retry-After) instead of
letting latency grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml.errors import ModelNotReady, Overloaded

InferFn = Callable[[Mapping[str, np.ndarray], int], Awaitable[list[Any]]]


@dataclass(slots=True)
class _Pending:
    arrays: Mapping[str, np.ndarray]
    future: asyncio.Future[list[Any]]


def _split(raw: list[Any], index: int) -> list[Any]:
    """Row `index` of each output, kept as a batch of one."""
    return [out[index : index + 1] for out in raw]


def _fail(pending: Iterable[_Pending], error: BaseException) -> None:
    for item in pending:
        if not item.future.done():
            item.future.set_exception(error)


def _unloaded() -> ModelNotReady:
    return ModelNotReady("the model version was unloaded", retry_after=1.0)


class MicroBatcher:
    """One queue per model version; used on the event loop only."""

    def __init__(
        self, infer: InferFn, max_batch_size: int, max_delay_ms: float, max_queue_size: int
    ) -> None:
        self._infer = infer
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_ms / 1000
        self.max_queue_size = max_queue_size
        self._queue: deque[_Pending] = deque()
        self._arrived = asyncio.Event()
        self._busy = False  # a leader or the drainer owns the next run
        self._drainer: asyncio.Task[None] | None = None
        self._closed = False
        self._last_batch_size = 1
        self.on_depth: Callable[[int], None] | None = None  # told the queue depth as it changes

    @property
    def depth(self) -> int:
        """Rows waiting for a run."""
        return len(self._queue)

    async def submit(self, arrays: Mapping[str, np.ndarray]) -> list[Any]:
        """Queue one row and wait for its outputs."""
        if self._closed:
            raise _unloaded()
        if len(self._queue) >= self.max_queue_size:
            raise Overloaded(
                f"the batching queue is full ({self.max_queue_size} rows); retry shortly",
                retry_after=1.0,
            )
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(arrays, future))
        self._arrived.set()
        if self.on_depth is not None:
            self.on_depth(len(self._queue))
        if not self._busy:
            self._busy = True
            try:
                await asyncio.sleep(0)  # requests the loop has already read join this batch
                await self._run_next_batch()
            finally:
                self._hand_over()
        return await future

    def _hand_over(self) -> None:
        """Rows left after a run go to the drainer; with none, the batcher is idle again."""
        if self._queue and not self._closed:
            self._drainer = asyncio.create_task(self._drain(), name="micro-batch-drainer")
        else:
            self._busy = False

    async def _drain(self) -> None:
        try:
            while self._queue and not self._closed:
                if self._last_batch_size > 1 and len(self._queue) < self.max_batch_size:
                    await self._fill()
                await self._run_next_batch()
        finally:
            self._busy = False
            if self._queue and not self._closed:
                self._busy = True
                self._drainer = asyncio.create_task(self._drain(), name="micro-batch-drainer")

    async def _fill(self) -> None:
        """Wait for more rows until the batch is full or the delay is spent."""
        deadline = time.monotonic() + self.max_delay_s
        while len(self._queue) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    async def _run_next_batch(self) -> None:
        size = min(len(self._queue), self.max_batch_size)
        batch = [self._queue.popleft() for _ in range(size)]
        if self.on_depth is not None:
            self.on_depth(len(self._queue))
        live = [p for p in batch if not p.future.done()]  # a cancelled request needs no answer
        if not live:
            return
        self._last_batch_size = len(live)
        names = live[0].arrays.keys()
        arrays = {name: np.concatenate([p.arrays[name] for p in live]) for name in names}
        try:
            raw = await self._infer(arrays, len(live))
        except asyncio.CancelledError:  # cancelled mid-run: no request may be left waiting
            _fail(live, _unloaded())
            raise
        except Exception as exc:  # each waiting request gets the error of the run it was in
            _fail(live, exc)
            return
        for index, pending in enumerate(live):
            if not pending.future.done():
                pending.future.set_result(_split(raw, index))

    async def close(self) -> None:
        """Refuse new rows and those still queued; the caller has let in-flight rows finish."""
        self._closed = True
        _fail(self._queue, _unloaded())
        self._queue.clear()
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
