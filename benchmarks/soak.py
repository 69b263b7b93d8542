"""Does the server hold up for minutes under steady load while versions come and go?

    python -m benchmarks.soak [--minutes 10] [--interval 3] [--threads 4]

Starts `python -m app` (one worker, POLL_INTERVAL_S=1) on a temporary copy of models_store and
drives steady load from `--threads` client threads: single-row POST /predict naming no version
(iris and diabetes), and every tenth request a POST /predict/batch of 16 iris rows. Meanwhile
the main thread changes the store every `--interval` seconds, in turns: it adds a new iris
version (a copy of the highest one, staged as `.tmp-N` and renamed to `N`; version numbers only
grow), then removes it again (rmtree). Under iris's `latest:2` policy each addition also
unloads the oldest version, and each removal loads it back.

Reports requests served, every answer that is not 2xx (there must be none: the exit status is 1
otherwise), latency p50/p99/max per minute, the versions that answered, and the server's VmRSS
at start and at the end. Written to benchmarks/results/soak.md. Not run in CI.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import threading
import time
from array import array
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.servers import REPO, Served, demo_store, our_server

POLL_INTERVAL_S = 1.0
BATCH_EVERY = 10  # every tenth request of a thread is a batch
BATCH_ROWS = 16
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
DIABETES_ROW = [0.038, 0.051, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.02, -0.018]


def _doubles() -> array[float]:
    return array("d")


@dataclass
class Tally:
    """What one client thread saw; merged at the end."""

    latencies: dict[int, array[float]] = field(default_factory=lambda: defaultdict(_doubles))
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)  # the first few non-2xx, for the report
    versions: Counter[str] = field(default_factory=Counter)

    def merge(self, other: Tally) -> None:
        for minute, values in other.latencies.items():
            self.latencies[minute].extend(values)
        self.statuses.update(other.statuses)
        self.failures.extend(other.failures[: max(0, 10 - len(self.failures))])
        self.versions.update(other.versions)


def drive(url: str, index: int, started: float, last_minute: int, stop: threading.Event) -> Tally:
    """Closed-loop load from one thread until `stop`; latencies by minute since `started`
    (the last few requests of the run count in `last_minute`)."""
    tally = Tally()
    single_iris = {"model": "iris", "features": IRIS_ROW}
    single_diabetes = {"model": "diabetes", "features": DIABETES_ROW}
    batch = {"model": "iris", "instances": [IRIS_ROW] * BATCH_ROWS}
    with httpx.Client(base_url=url, timeout=30.0) as client:
        turn = index
        while not stop.is_set():
            turn += 1
            if turn % BATCH_EVERY == 0:
                path, body = "/predict/batch", batch
            else:
                path, body = "/predict", single_diabetes if turn % 4 == 0 else single_iris
            sent = time.perf_counter()
            try:
                answer = client.post(path, json=body)
            except httpx.HTTPError as exc:
                tally.statuses[0] += 1
                if len(tally.failures) < 10:
                    tally.failures.append(f"{path}: no answer: {exc!r}")
                continue
            took = time.perf_counter() - sent
            tally.latencies[min(int((sent - started) // 60), last_minute)].append(took)
            tally.statuses[answer.status_code] += 1
            if answer.is_success:
                tally.versions[f"{body['model']} {answer.json()['version']}"] += 1
            elif len(tally.failures) < 10:
                tally.failures.append(f"{path}: {answer.status_code} {answer.text[:300]}")
    return tally


class StoreChurn:
    """Adds a new iris version, then removes it, in turns."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        versions = sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
        self.source = model_dir / str(versions[-1])
        self.next_version = versions[-1] + 1
        self.current: Path | None = None
        self.added = 0
        self.removed = 0

    def step(self) -> None:
        if self.current is None:
            version = self.next_version
            self.next_version += 1
            staged = self.model_dir / f".tmp-{version}"
            shutil.copytree(self.source, staged)
            self.current = self.model_dir / str(version)
            staged.rename(self.current)
            self.added += 1
        else:
            shutil.rmtree(self.current)
            self.current = None
            self.removed += 1


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Result:
    minutes: float
    interval: float
    threads: int
    elapsed_s: float
    tally: Tally
    rss_kib: list[tuple[float, int]]  # (seconds since start, VmRSS)
    added: int
    removed: int


def _run(
    server: Served, store: Path, minutes: float, interval: float, threads: int
) -> tuple[list[Tally], float, list[tuple[float, int]], StoreChurn]:
    """Load from `threads` threads while a version comes and goes every `interval` seconds."""
    url, process = server.url, server.process
    churn = StoreChurn(store / "iris")
    last_minute = max(0, math.ceil(minutes) - 1)
    started = time.perf_counter()
    rss = [(0.0, server.rss_kib())]
    print(f"server pid {server.pid}, VmRSS {rss[0][1] / 1024:.1f} MiB", flush=True)
    stop = threading.Event()
    workers = [
        _Worker(target=drive, args=(url, i, started, last_minute, stop)) for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    deadline = started + minutes * 60
    next_change = started + interval
    next_rss = started + 60
    try:
        while (now := time.perf_counter()) < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}")
            if now >= next_change:
                churn.step()
                next_change += interval
            if now >= next_rss:
                rss.append((now - started, server.rss_kib()))
                print(
                    f"{(now - started) / 60:5.1f} min: VmRSS {rss[-1][1] / 1024:.1f} MiB,"
                    f" {churn.added} versions added, {churn.removed} removed",
                    flush=True,
                )
                next_rss += 60
            time.sleep(min(0.05, max(0.0, min(next_change, next_rss) - now)))
    finally:
        stop.set()
        tallies = [worker.join_result() for worker in workers]
    elapsed = time.perf_counter() - started
    rss.append((elapsed, server.rss_kib()))
    return tallies, elapsed, rss, churn


def soak(minutes: float, interval: float, threads: int) -> Result:
    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        store = demo_store(Path(scratch) / "store")
        log = Path(scratch) / "server.log"
        extra_env = {"POLL_INTERVAL_S": str(POLL_INTERVAL_S)}
        try:
            with our_server(store, extra_env=extra_env, log=log) as server:
                tallies, elapsed, rss, churn = _run(server, store, minutes, interval, threads)
        except BaseException:
            print(f"--- server output ---\n{log.read_text(errors='replace')[-5000:]}")
            raise
        output = log.read_text(errors="replace").strip()
        if output:
            print(f"--- server output ---\n{output[-5000:]}")
    total = Tally()
    for tally in tallies:
        total.merge(tally)
    return Result(minutes, interval, threads, elapsed, total, rss, churn.added, churn.removed)


class _Worker(threading.Thread):
    """A thread that keeps what its target returns, and re-raises what it raised."""

    def __init__(self, target: Any, args: tuple[Any, ...]) -> None:
        super().__init__(daemon=True)
        self._call = (target, args)
        self._result: Any = None
        self._error: BaseException | None = None

    def run(self) -> None:
        target, args = self._call
        try:
            self._result = target(*args)
        except BaseException as exc:  # handed to the main thread
            self._error = exc

    def join_result(self) -> Any:
        self.join()
        if self._error is not None:
            raise self._error
        return self._result


def failures(result: Result) -> int:
    return sum(n for status, n in result.tally.statuses.items() if not 200 <= status < 300)


def report(result: Result) -> str:
    tally = result.tally
    served = sum(tally.statuses.values())
    bad = failures(result)
    everything = [v for values in tally.latencies.values() for v in values]
    start_rss, end_rss = result.rss_kib[0][1], result.rss_kib[-1][1]
    lines = [
        f"# Soak: {result.minutes:g} min of load while iris versions come and go",
        "",
        f"One worker, POLL_INTERVAL_S={POLL_INTERVAL_S:g}, {result.threads} client threads "
        f"(closed loop, httpx): single-row POST /predict naming no version (iris, diabetes), "
        f"every {BATCH_EVERY}th request a POST /predict/batch of {BATCH_ROWS} rows. Every "
        f"{result.interval:g} s the store changes, in turns: a new iris version is added "
        "(staged, renamed) or the one added before is removed.",
        "",
        f"- requests: {served} in {result.elapsed_s:.0f} s ({served / result.elapsed_s:.0f}/s)",
        f"- not 2xx: {bad}" + (f" ({dict(tally.statuses)})" if bad else ""),
        f"- store changes: {result.added} versions added, {result.removed} removed",
        f"- latency over the run: p50 {percentile(everything, 0.5) * 1000:.2f} ms, "
        f"p99 {percentile(everything, 0.99) * 1000:.2f} ms, max {max(everything) * 1000:.1f} ms",
        f"- VmRSS: {start_rss / 1024:.1f} MiB at start, {end_rss / 1024:.1f} MiB at the end "
        f"({(end_rss - start_rss) / 1024:+.1f} MiB)",
        "",
        "| minute | requests | p50 (ms) | p99 (ms) | max (ms) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for minute in sorted(tally.latencies):
        values = tally.latencies[minute]
        lines.append(
            f"| {minute + 1} | {len(values)} | {percentile(values, 0.5) * 1000:.2f} | "
            f"{percentile(values, 0.99) * 1000:.2f} | {max(values) * 1000:.1f} |"
        )
    lines += ["", "| elapsed (s) | VmRSS (MiB) |", "| --- | --- |"]
    lines += [f"| {at:.0f} | {kib / 1024:.1f} |" for at, kib in result.rss_kib]
    lines += ["", "Answers by model and version:", ""]
    lines += [f"- {key}: {n}" for key, n in sorted(tally.versions.items())]
    if tally.failures:
        lines += ["", "First failures:", ""] + [f"- `{f}`" for f in tally.failures]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between changes")
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    parser.add_argument(
        "--max-rss-growth-mib",
        type=float,
        default=10.0,
        help="the memory bound held: VmRSS at the end over the start (default 10 MiB)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.interval <= 0 or args.threads < 1:
        parser.error("need --minutes > 0, --interval > 0 and --threads >= 1")
    result = soak(args.minutes, args.interval, args.threads)
    text = report(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.md").write_text(text + "\n")
    print("\n" + text)
    bad = failures(result)
    if bad:
        print(f"\nFAILED: {bad} answers were not 2xx", file=sys.stderr)
        return 1
    growth_mib = (result.rss_kib[-1][1] - result.rss_kib[0][1]) / 1024
    if growth_mib > args.max_rss_growth_mib:
        print(
            f"\nFAILED: VmRSS grew {growth_mib:+.1f} MiB, bound {args.max_rss_growth_mib:g} MiB",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
