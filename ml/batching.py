"""Adaptive micro-batching: concurrent single-row requests to one version share a session run.

The batcher runs whatever is queued as soon as it is idle, in a worker thread, so rows that
arrive during a run form the next batch. It waits up to `max_delay_ms` for a batch to fill only
while the previous batch held more than one row, that is, only under concurrent load: a lone
client never pays the delay. A queue longer than `max_queue_size` rows refuses new rows at once
(Overloaded, a 503 with Retry-After) instead of letting latency grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml.errors import ModelNotReady, Overloaded

RunFn = Callable[[Mapping[str, np.ndarray], int], list[Any]]


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


class MicroBatcher:
    """One queue and one worker task per model version; created on the event loop."""

    def __init__(
        self, run: RunFn, max_batch_size: int, max_delay_ms: float, max_queue_size: int
    ) -> None:
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_ms / 1000
        self.max_queue_size = max_queue_size
        self._queue: deque[_Pending] = deque()
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._last_batch_size = 1
        self.batch_sizes: deque[int] = deque(maxlen=1024)  # recent sizes, for tests and metrics

    @property
    def depth(self) -> int:
        """Rows waiting for a run."""
        return len(self._queue)

    async def submit(self, arrays: Mapping[str, np.ndarray]) -> list[Any]:
        """Queue one row and wait for its outputs."""
        if len(self._queue) >= self.max_queue_size:
            raise Overloaded(
                f"the batching queue is full ({self.max_queue_size} rows); retry shortly",
                retry_after=1.0,
            )
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(arrays, future))
        self._arrived.set()
        if self._worker is None:
            self._worker = asyncio.create_task(self._serve(), name="micro-batcher")
        return await future

    async def _serve(self) -> None:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            while self._queue:
                if self._last_batch_size > 1 and len(self._queue) < self.max_batch_size:
                    await self._fill()
                size = min(len(self._queue), self.max_batch_size)
                batch = [self._queue.popleft() for _ in range(size)]
                self._last_batch_size = size
                self.batch_sizes.append(size)
                await self._run_batch(batch)

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

    async def _run_batch(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.future.done()]  # a cancelled request needs no answer
        if not live:
            return
        names = live[0].arrays.keys()
        arrays = {name: np.concatenate([p.arrays[name] for p in live]) for name in names}
        try:
            raw = await asyncio.to_thread(self._run, arrays, len(live))
        except asyncio.CancelledError:  # closed mid-run: no request may be left waiting
            _fail(live, ModelNotReady("the model version was unloaded", retry_after=1.0))
            raise
        except Exception as exc:  # each waiting request gets the error of the run it was in
            _fail(live, exc)
            return
        for index, pending in enumerate(live):
            if not pending.future.done():
                pending.future.set_result(_split(raw, index))

    async def close(self) -> None:
        """Stop the worker; the caller has let in-flight rows finish, so any left are refused."""
        _fail(self._queue, ModelNotReady("the model version was unloaded", retry_after=1.0))
        self._queue.clear()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
