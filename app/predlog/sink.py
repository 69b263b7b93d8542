"""A sink: one thread of its own behind a bounded queue, so that a slow, full or missing
destination costs requests nothing. The loop only appends finished bytes to the queue or, when
the queue holds its cap of rows already, drops the event and counts it; it never waits. The
thread does little Python work per event (the bytes are ready): it spends its time in system
calls, which release the interpreter lock, so the loop never waits for it either.

Each counter has a single writer (the loop: put rows, drops and events that could not become
JSON; the thread: taken rows, written and failed), so none needs a lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

# How long the thread lets events gather before a write: they reach the sink this late at most
# (a queue holding BATCH_EVENTS already is written at once).
IDLE_S = 0.05
# Events taken from the queue for one write.
BATCH_EVENTS = 512
# A failing sink says so in the log at most this often.
WARN_EVERY_S = 60.0


class Sink:
    """Writes finished events in a thread; subclasses implement `write` (and may `close`)."""

    name = "sink"

    def __init__(self, queue_rows: int) -> None:
        self.queue_rows = queue_rows
        self.dropped = 0
        self.unwritable = 0  # events that could not become JSON, counted as failed (the loop's)
        self.written = 0
        self.failed = 0
        # (payload, rows, events): a payload holds one event, or several lines of the file sink.
        self._queue: deque[tuple[Any, int, int]] = deque()
        self._put_rows = 0
        self._taken_rows = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned_at = -WARN_EVERY_S
        self.observe: Callable[[float], None] = _ignore
        """Receives the seconds of each write (the write-latency histogram)."""

    # -- on the loop ------------------------------------------------------------------------

    def offer(self, payload: Any, rows: int, events: int = 1) -> None:
        """Queue the bytes of `events` events, or drop and count them when the queue is full."""
        if self._put_rows - self._taken_rows + rows > self.queue_rows:
            self.dropped += events
            return
        self._put_rows += rows
        self._queue.append((payload, rows, events))

    @property
    def queued_rows(self) -> int:
        return self._put_rows - self._taken_rows

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"prediction-log-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        """Write what is queued, for up to `timeout_s`; what is left then is not written."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # -- in the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        queue = self._queue
        while True:
            stopping = self._stopping.is_set()
            if not queue and stopping:
                break
            if len(queue) < BATCH_EVENTS and not stopping:
                # Lines gather for a while: one write for many, rather than a write (and a turn
                # of the interpreter lock, taken from the loop) for every few lines.
                self._stopping.wait(IDLE_S)
                if not queue:
                    continue
            batch = [queue.popleft() for _ in range(min(len(queue), BATCH_EVENTS))]
            events = sum(count for _, _, count in batch)
            try:
                self.write([payload for payload, _, _ in batch], events)
            except Exception as exc:  # a bug in a sink must not end its thread
                self.failed += events
                self.warn("failed: %r", exc)
            finally:
                self._taken_rows += sum(rows for _, rows, _ in batch)
        self.close()

    def write(self, batch: Sequence[Any], events: int) -> None:
        """Write `batch` (payloads as offered, `events` events in all), adding to `written` and
        `failed`."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the sink holds (its thread ends next)."""

    def warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning(f"prediction log, {self.name} sink: {message}", *args)


def _ignore(seconds: float) -> None:
    pass
