import asyncio
import threading

import numpy as np
import pytest

from ml.batching import MicroBatcher
from ml.errors import ModelNotReady, Overloaded


class RecordingRun:
    """A model run, in a worker thread as LoadedModel.infer does for a large batch, that doubles
    its input and records each batch's size."""

    def __init__(self, pause: threading.Event | None = None) -> None:
        self.sizes: list[int] = []
        self.pause = pause

    async def __call__(self, arrays, n_rows):
        return await asyncio.to_thread(self.run, arrays, n_rows)

    def run(self, arrays, n_rows):
        if self.pause is not None:
            self.pause.wait(5)
        x = arrays["x"]
        assert len(x) == n_rows
        self.sizes.append(n_rows)
        return [x * 2, [{"row": float(v)} for v in x[:, 0]]]


def row(value: float) -> dict[str, np.ndarray]:
    return {"x": np.array([[value, value]], dtype=np.float32)}


def test_concurrent_rows_share_runs_and_keep_their_order():
    async def scenario():
        run = RecordingRun()
        batcher = MicroBatcher(run, max_batch_size=16, max_delay_ms=5, max_queue_size=1000)
        results = await asyncio.gather(*(batcher.submit(row(i)) for i in range(40)))
        await batcher.close()
        return run, results

    run, results = asyncio.run(scenario())
    for i, (doubled, mapped) in enumerate(results):
        np.testing.assert_array_equal(doubled, [[2 * i, 2 * i]])
        assert mapped == [{"row": float(i)}]
    assert sum(run.sizes) == 40
    assert max(run.sizes) == 16
    assert len(run.sizes) < 40


def test_a_lone_request_runs_at_once_without_waiting_for_the_delay():
    async def scenario():
        run = RecordingRun()
        # A huge delay: if a lone row waited for it, this would time out.
        batcher = MicroBatcher(run, max_batch_size=64, max_delay_ms=60_000, max_queue_size=10)
        for i in range(5):
            await asyncio.wait_for(batcher.submit(row(i)), timeout=5)
        await batcher.close()
        return run

    assert asyncio.run(scenario()).sizes == [1, 1, 1, 1, 1]


def test_a_full_queue_refuses_rows_instead_of_hanging():
    async def scenario():
        gate = threading.Event()
        run = RecordingRun(pause=gate)
        batcher = MicroBatcher(run, max_batch_size=2, max_delay_ms=0, max_queue_size=3)
        first = asyncio.create_task(batcher.submit(row(0)))
        await asyncio.sleep(0.05)  # the worker now holds row 0 in a blocked run
        queued = [asyncio.create_task(batcher.submit(row(i))) for i in range(1, 4)]
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(row(99))
        gate.set()
        done = await asyncio.gather(first, *queued)
        await batcher.close()
        return refused.value, done

    refused, done = asyncio.run(scenario())
    assert refused.retry_after >= 1
    assert "queue is full" in refused.detail
    assert len(done) == 4


def test_a_failed_run_fails_every_row_in_it():
    async def broken(arrays, n_rows):
        raise RuntimeError("boom")

    async def scenario():
        batcher = MicroBatcher(broken, max_batch_size=8, max_delay_ms=1, max_queue_size=100)
        outcomes = await asyncio.gather(
            *(batcher.submit(row(i)) for i in range(3)), return_exceptions=True
        )
        await batcher.close()
        return outcomes

    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, RuntimeError) for o in outcomes)


def test_close_refuses_rows_still_queued():
    async def scenario():
        gate = threading.Event()
        batcher = MicroBatcher(
            RecordingRun(pause=gate), max_batch_size=1, max_delay_ms=0, max_queue_size=10
        )
        running = asyncio.create_task(batcher.submit(row(0)))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(batcher.submit(row(1)))
        await asyncio.sleep(0.01)
        await batcher.close()
        gate.set()
        return await asyncio.gather(running, waiting, return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert isinstance(outcomes[1], ModelNotReady)
