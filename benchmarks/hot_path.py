"""The in-process timings behind choices on the request path, each against its alternative.

    python -m benchmarks.hot_path [--repeats 2000] [--rounds 5]

Each pair is timed in alternating rounds of `--repeats` calls, and the median round's time per
call is printed with the ratio. Before timing, each pair is checked to give the same result, so
that a faster alternative that answers differently cannot pass for a win. Timed here: the hop to
a worker thread (`asyncio.to_thread`) against a direct call; onnxruntime with one `RunOptions`
made once against none (it builds a default per call) on the demo iris; pydantic's
`TypeAdapter.validate_python` against its core validator on one row; reading 64 and 2
validated rows into numpy as one flat run against numpy's nested-sequence reader; building a
frozen dataclass against a plain one with slots; probability dicts for 64 rows built with `map()`
against a comprehension; prometheus-client's update for one request (a counter and a histogram
with labels) against plain-number tallies. Last, the objects `gc.freeze()` takes out of
collections once the server's modules are imported, and what a full collection costs with and
without them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Annotated, Any

import numpy as np
import onnxruntime as ort
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import Strict, TypeAdapter

from benchmarks.failures import exits_non_zero_on_failure, require
from benchmarks.options import alternating
from benchmarks.servers import REPO

MODEL = REPO / "models_store" / "iris" / "2" / "model.onnx"
LABELS = ("setosa", "versicolor", "virginica")


def per_call_us(call: Callable[[], object], repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - started) / repeats * 1e6


def pair(
    chosen: Callable[[], object], other: Callable[[], object], repeats: int, rounds: int
) -> tuple[float, float]:
    """Median per-call µs of the chosen way and of the alternative, rounds alternating."""
    require(_same(chosen(), other()), f"{chosen} and {other} answered differently: not a fair pair")
    times: tuple[list[float], list[float]] = ([], [])
    for r in range(rounds):
        for slot, call in alternating(((0, chosen), (1, other)), r):
            times[slot].append(per_call_us(call, repeats))
    return statistics.median(times[0]), statistics.median(times[1])


def _same(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def thread_hop(repeats: int, rounds: int) -> tuple[float, float]:
    def work() -> int:
        return 42

    async def direct() -> int:
        return work()

    async def hop() -> int:
        return await asyncio.to_thread(work)

    loop = asyncio.new_event_loop()
    try:
        return pair(
            lambda: loop.run_until_complete(direct()),
            lambda: loop.run_until_complete(hop()),
            repeats,
            rounds,
        )
    finally:
        loop.close()


def run_options(repeats: int, rounds: int) -> tuple[float, float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)}
    made_once = ort.RunOptions()
    return pair(
        lambda: session.run(None, feed, made_once)[1],
        lambda: session.run(None, feed)[1],
        repeats,
        rounds,
    )


def rows_of(count: int) -> list[list[float]]:
    generator = np.random.default_rng(0)
    return generator.normal(size=(count, 4)).round(3).tolist()


def validators(repeats: int, rounds: int) -> tuple[float, float]:
    adapter: TypeAdapter[list[tuple[Any, ...]]] = TypeAdapter(
        list[tuple[Annotated[float, Strict()], ...]]
    )
    core = adapter.validator.validate_python
    rows = rows_of(1)
    return pair(lambda: core(rows), lambda: adapter.validate_python(rows), repeats, rounds)


def flat_read(count: int, repeats: int, rounds: int) -> tuple[float, float]:
    rows = [tuple(row) for row in rows_of(count)]
    width = len(rows[0])

    def flat() -> np.ndarray:
        values = np.fromiter(chain.from_iterable(rows), np.float32, count * width)
        return values.reshape(count, width)

    return pair(flat, lambda: np.array(rows, dtype=np.float32), repeats, rounds)


@dataclass(frozen=True)
class Frozen:
    prediction: object
    probabilities: object


@dataclass(slots=True)
class Slotted:
    prediction: object
    probabilities: object


def dataclasses(repeats: int, rounds: int) -> tuple[float, float]:
    return pair(
        lambda: vars_of(Slotted("setosa", None)),
        lambda: vars_of(Frozen("setosa", None)),
        repeats,
        rounds,
    )


def vars_of(made: Frozen | Slotted) -> tuple[object, object]:
    return made.prediction, made.probabilities


def probability_dicts(repeats: int, rounds: int) -> tuple[float, float]:
    rows = np.random.default_rng(0).random((64, len(LABELS))).tolist()
    return pair(
        lambda: list(map(dict, map(zip, repeat(LABELS), rows))),
        lambda: [dict(zip(LABELS, row, strict=True)) for row in rows],
        repeats,
        rounds,
    )


def metrics_update(repeats: int, rounds: int) -> tuple[float, float]:
    registry = CollectorRegistry()
    requests = Counter("bench_requests", "", ["route", "status"], registry=registry)
    runs = Counter("bench_rows", "", ["model"], registry=registry)
    seconds = Histogram("bench_seconds", "", ["route"], registry=registry)
    tallies: dict[tuple[str, str], list[float]] = {}

    def prometheus() -> None:
        requests.labels("/predict", "200").inc()
        runs.labels("iris").inc()
        seconds.labels("/predict").observe(0.0004)

    def plain() -> None:
        tally = tallies.get(("/predict", "200"))
        if tally is None:
            tally = tallies[("/predict", "200")] = [0.0, 0.0, 0.0]
        tally[0] += 1
        tally[1] += 1
        tally[2] += 0.0004

    times = pair(plain, prometheus, repeats, rounds)
    counted = registry.get_sample_value(
        "bench_requests_total", {"route": "/predict", "status": "200"}
    )
    require(
        counted == tallies[("/predict", "200")][0],
        f"prometheus counted {counted}, the tally {tallies[('/predict', '200')][0]}",
    )
    return times


def frozen_collection() -> tuple[int, float, float]:
    """Objects gc.freeze() takes out once the server's modules are imported, and a full
    collection's ms before and after."""
    import app.main  # noqa: F401  (the server's modules, as a worker has them at start-up)

    gc.collect()
    before = per_call_us(gc.collect, 5) / 1000
    gc.freeze()
    frozen = gc.get_freeze_count()
    after = per_call_us(gc.collect, 5) / 1000
    gc.unfreeze()
    require(frozen > 0, "gc.freeze() froze nothing")
    return frozen, before, after


@exits_non_zero_on_failure
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    n, r = args.repeats, args.rounds
    cases = [
        ("direct call / asyncio.to_thread hop", thread_hop(max(1, n // 10), r)),
        ("onnxruntime run, RunOptions made once / none", run_options(n, r)),
        ("1 row: core validator / TypeAdapter.validate_python", validators(n, r)),
        ("64 rows into numpy: flat run / nested reader", flat_read(64, n, r)),
        ("2 rows into numpy: flat run / nested reader", flat_read(2, n, r)),
        ("build: dataclass with slots / frozen dataclass", dataclasses(n, r)),
        ("64 probability dicts: map() / comprehension", probability_dicts(n, r)),
        ("one request's metrics: plain tallies / prometheus-client", metrics_update(n, r)),
    ]
    print(f"Medians of {r} alternating rounds of {n} calls (the thread hop: {max(1, n // 10)}).\n")
    print("| chosen / alternative | chosen µs | alternative µs | difference µs | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for name, (chosen, other) in cases:
        cells = f"{chosen:.2f} | {other:.2f} | {other - chosen:+.2f} | {chosen / other:.2f}"
        print(f"| {name} | {cells} |")
    frozen, before, after = frozen_collection()
    print(
        f"\ngc.freeze() after importing app.main: {frozen:,} objects frozen; "
        f"a full collection {before:.2f} ms before, {after:.3f} ms after"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
