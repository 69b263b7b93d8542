"""Per-request bookkeeping of the edge that must cost next to nothing: request ids and deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from typing import Any


class RequestIds:
    """Ids unique across workers and restarts, without a uuid per request."""

    def __init__(self) -> None:
        self._prefix = os.urandom(5).hex().encode()
        self._counter = itertools.count(1)

    def next(self) -> bytes:
        return b"%s-%x" % (self._prefix, next(self._counter))


class Deadlines:
    """Cancels requests that outlive the timeout: one task looks every tick, which costs far
    less per request than a timer of its own (asyncio.timeout) would."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.tick_s = min(0.5, timeout_s / 10)
        self._running: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def start(self, task: asyncio.Task[Any]) -> None:
        self._running[task] = time.monotonic() + self.timeout_s
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def finish(self, task: asyncio.Task[Any]) -> None:
        self._running.pop(task, None)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether `task` was cancelled here, for running too long (asked once per task)."""
        if task in self._expired:
            self._expired.discard(task)
            return True
        return False

    async def close(self) -> None:
        """Stop the sweeping task (the lifespan's end): a task left pending would outlive the
        app in a loop that keeps running, as an embedding test's does."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None and not sweeper.done():
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            now = time.monotonic()
            for task, deadline in list(self._running.items()):
                if deadline <= now:
                    del self._running[task]
                    self._expired.add(task)
                    task.cancel()
