"""Worker scaling on a machine with many cores: ours, the bare ASGI floor and the naive FastAPI
wrapper at WORKERS = 1, 2, 4, 8, each server pinned to one half of the cores and wrk to the other.

    python -m benchmarks.scaling [--workers 1,2,4,8] [--seconds 10] [--connections 64]

Single-row POSTs to /predict on the demo iris forest (version 2). One run per cell; the ratios
(ours against the floor and the naive wrapper at the same worker count) are what to read.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager

from benchmarks.bodies import SINGLE
from benchmarks.failures import exits_non_zero_on_failure, has_prediction
from benchmarks.servers import REPO, Served
from benchmarks.wrk import WrkResult, run_wrk
from loadtest.server import model_server, serve

STORE = REPO / "models_store"
MODEL = STORE / "iris" / "2" / "model.onnx"


def cores() -> tuple[str, str, int]:
    """(server cores, load generator cores, how many each) as taskset lists."""
    count = os.cpu_count() or 2
    half = max(1, count // 2)
    return f"0-{half - 1}", f"{half}-{count - 1}", half


def ours(workers: int, cpu: str) -> AbstractContextManager[Served]:
    return model_server(STORE, workers, cwd=REPO, cpu=cpu)


def baseline(module: str, attribute: str, workers: int, cpu: str) -> AbstractContextManager[Served]:
    command = [
        sys.executable, "-m", "uvicorn", f"benchmarks.baselines.{module}:{attribute}",
        "--host", "127.0.0.1", "--port", "{port}", "--no-access-log", "--log-level", "warning",
        "--workers", str(workers),
    ]  # fmt: skip
    env = {"MODEL_PATH": str(MODEL)}
    return serve(command, env, ready_path="/health/live", cpu=cpu, cwd=REPO)


SERVERS = {
    "ours": lambda workers, cpu: ours(workers, cpu),
    "bare ASGI + orjson + onnxruntime": lambda w, cpu: baseline("bare_asgi", "app", w, cpu),
    "naive FastAPI + onnxruntime (typed return)": lambda w, cpu: baseline(
        "naive_fastapi", "app", w, cpu
    ),
}


@exits_non_zero_on_failure
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)
    server_cpus, load_cpus, half = cores()
    threads = min(8, half)
    print(
        f"{os.cpu_count()} cores: servers on {server_cpus}, wrk ({threads} threads) on {load_cpus}"
    )
    results: dict[tuple[str, int], WrkResult] = {}
    counts = [int(w) for w in args.workers.split(",")]
    for workers in counts:
        for name, start in SERVERS.items():
            with start(workers, server_cpus) as server:
                url = server.url + "/predict"
                run_wrk(url, SINGLE, args.connections, 2, load_cpus, threads)  # warm-up
                result = run_wrk(
                    url, SINGLE, args.connections, args.seconds, load_cpus, threads, has_prediction
                )
            results[(name, workers)] = result
            print(
                f"WORKERS={workers} {name:44} {result.requests_per_s:9.0f} req/s "
                f"p99 {result.p99_ms:7.2f} ms errors {result.errors}",
                flush=True,
            )
    names = list(SERVERS)
    print(
        "\n| WORKERS | "
        + " | ".join(f"{n} req/s (p99 ms)" for n in names)
        + " | ours / bare | ours / naive |"
    )
    print("| --- " * (len(names) + 3) + "|")
    for workers in counts:
        cells = [
            f"{results[(n, workers)].requests_per_s:,.0f} ({results[(n, workers)].p99_ms:.2f})"
            for n in names
        ]
        mine = results[("ours", workers)].requests_per_s
        bare = results[(names[1], workers)].requests_per_s
        naive = results[(names[2], workers)].requests_per_s
        print(
            f"| {workers} | " + " | ".join(cells) + f" | {mine / bare:.2f}x | {mine / naive:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
