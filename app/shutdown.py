"""SIGTERM: readiness turns 503 at once; uvicorn then lets in-flight requests finish."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Protocol


class Drains(Protocol):
    draining: bool


@contextmanager
def not_ready_on_sigterm(state: Drains) -> Iterator[None]:
    """While the block runs, SIGTERM first sets `state.draining`, then reaches uvicorn's handler
    (which stops accepting connections and waits up to DRAIN_TIMEOUT_S for in-flight ones)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only (an app under a test client lives elsewhere)
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        state.draining = True
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, previous)
