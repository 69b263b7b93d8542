"""SIGTERM turns readiness off (app.shutdown) before uvicorn's own handler drains."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

import pytest
from starlette.datastructures import State

from app.shutdown import not_ready_on_sigterm


class Recorder:
    """A SIGTERM handler that only remembers it was called."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.calls.append(signum)


@pytest.fixture
def previous() -> Iterator[Recorder]:
    """A recording SIGTERM handler in place of the test process's own, restored afterwards."""
    assert threading.current_thread() is threading.main_thread()
    original = signal.getsignal(signal.SIGTERM)
    recorder = Recorder()
    signal.signal(signal.SIGTERM, recorder)
    try:
        yield recorder
    finally:
        signal.signal(signal.SIGTERM, original)


def _wait_for(condition, timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the signal was not handled in time"
        time.sleep(0.005)


def test_sigterm_sets_draining_then_calls_the_previous_handler(previous):
    state = State()
    state.draining = False

    with not_ready_on_sigterm(state):
        assert signal.getsignal(signal.SIGTERM) is not previous
        os.kill(os.getpid(), signal.SIGTERM)
        _wait_for(lambda: previous.calls)
        assert state.draining is True
        assert previous.calls == [signal.SIGTERM]

    assert signal.getsignal(signal.SIGTERM) is previous


def test_previous_handler_restored_without_a_signal(previous):
    state = State()

    with not_ready_on_sigterm(state):
        pass

    assert signal.getsignal(signal.SIGTERM) is previous
    assert previous.calls == []
    assert getattr(state, "draining", False) is False


def test_previous_handler_restored_after_an_error(previous):
    with pytest.raises(RuntimeError), not_ready_on_sigterm(State()):
        raise RuntimeError("the block failed")

    assert signal.getsignal(signal.SIGTERM) is previous


def test_outside_the_main_thread_installs_nothing(previous):
    seen: list[object] = []

    def enter() -> None:
        with not_ready_on_sigterm(State()):
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join(5)

    assert seen == [previous]
    assert signal.getsignal(signal.SIGTERM) is previous


def test_ready_is_503_problem_while_draining(serve, demo_store, problem):
    with serve(demo_store) as client:
        before = client.get("/health/ready")
        client.app.runtime.draining = True
        during = client.get("/health/ready")
        live = client.get("/health/live")
        client.app.runtime.draining = False
        after = client.get("/health/ready")

    assert before.status_code == 200
    body = problem(during, 503)
    assert "shutting down" in body["detail"]
    assert live.status_code == 200
    assert after.status_code == 200
