"""Our service against the naive FastAPI wrapper and the bare ASGI floor, back to back.

    python -m benchmarks.compare [--rounds 2] [--seconds 10] [--connections 8]

Each round starts each server in turn (A B C D A B C D ...) on the same iris forest and drives
it with wrk: single-row POSTs, then 64-row batches. Medians over rounds; the ratios are what to
read, since this machine is shared and absolute rates move by ±30% between runs. The naive
wrapper comes in both forms teams write (benchmarks/baselines/naive_fastapi.py): with a return
annotation, the stronger of the two, and without one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from benchmarks.bodies import BATCH, BATCH_ROWS, SINGLE
from benchmarks.failures import exits_non_zero_on_failure, has_prediction, has_predictions
from benchmarks.servers import REPO, Served, baseline_server, our_server
from benchmarks.wrk import WrkResult, run_wrk

STORE = REPO / "models_store"
MODEL = STORE / "iris" / "2" / "model.onnx"

NAIVE = "naive FastAPI + onnxruntime (typed return)"
NAIVE_UNTYPED = "naive FastAPI + onnxruntime (untyped return)"
OURS = "ours"
BARE = "bare ASGI + orjson + onnxruntime"
SERVERS: dict[str, Callable[[], AbstractContextManager[Served]]] = {
    NAIVE: lambda: baseline_server("naive_fastapi", MODEL),
    NAIVE_UNTYPED: lambda: baseline_server("naive_fastapi", MODEL, "untyped_app"),
    OURS: lambda: our_server(STORE),
    BARE: lambda: baseline_server("bare_asgi", MODEL),
}


def measure(rounds: int, seconds: float, connections: int) -> dict[str, dict[str, list[WrkResult]]]:
    results: dict[str, dict[str, list[WrkResult]]] = {
        name: {"single": [], "batch": []} for name in SERVERS
    }
    for round_index in range(rounds):
        for name, start in SERVERS.items():
            with start() as server:
                url = server.url
                run_wrk(url + "/predict", SINGLE, connections, 2)  # warm-up
                for route, path, body, check in (
                    ("single", "/predict", SINGLE, has_prediction),
                    ("batch", "/predict/batch", BATCH, has_predictions(BATCH_ROWS)),
                ):
                    result = run_wrk(url + path, body, connections, seconds, check=check)
                    results[name][route].append(result)
                    print(
                        f"round {round_index + 1} {name:45} {route:6} "
                        f"{result.requests_per_s:9.0f} req/s  p99 {result.p99_ms:6.2f} ms  "
                        f"errors {result.errors}",
                        flush=True,
                    )
            time.sleep(1)
    return results


def median(results: list[WrkResult], field: str) -> float:
    return statistics.median(getattr(r, field) for r in results)


def report(results: dict[str, dict[str, list[WrkResult]]], connections: int) -> str:
    lines = [
        "| server | single req/s | single p50 ms | single p99 ms | batch req/s (rows/s) | "
        "batch p99 ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, routes in results.items():
        single, batch = routes["single"], routes["batch"]
        lines.append(
            f"| {name} | {median(single, 'requests_per_s'):,.0f} | {median(single, 'p50_ms'):.2f} "
            f"| {median(single, 'p99_ms'):.2f} | {median(batch, 'requests_per_s'):,.0f} "
            f"({median(batch, 'requests_per_s') * BATCH_ROWS:,.0f}) "
            f"| {median(batch, 'p99_ms'):.2f} |"
        )
    ours, bare = results[OURS], results[BARE]
    ratio = lambda a, b, f="requests_per_s": median(a, f) / median(b, f)  # noqa: E731
    lines += [
        "",
        f"{connections} connections, 1 worker, wrk and the server sharing the machine's cores.",
        "",
    ]
    for label, naive in ((NAIVE, results[NAIVE]), (NAIVE_UNTYPED, results[NAIVE_UNTYPED])):
        lines += [
            f"- single-row throughput, ours / {label}: "
            f"{ratio(ours['single'], naive['single']):.2f}x",
            f"- single-row p99, ours / {label}: "
            f"{ratio(ours['single'], naive['single'], 'p99_ms'):.2f}x",
            f"- 64-row batch rows/s, ours / {label}: {ratio(ours['batch'], naive['batch']):.2f}x",
        ]
    lines += [
        f"- single-row throughput, ours / bare ASGI: {ratio(ours['single'], bare['single']):.2f}x",
        f"- 64-row batch rows/s, ours / bare ASGI: {ratio(ours['batch'], bare['batch']):.2f}x",
    ]
    return "\n".join(lines)


@exits_non_zero_on_failure
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    text = report(measure(args.rounds, args.seconds, args.connections), args.connections)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.md").write_text(text + "\n")
    print("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
