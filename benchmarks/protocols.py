"""One model over HTTP JSON, HTTP binary and gRPC, side by side, at 1, 64 and 1,024 rows.

    python -m benchmarks.protocols [--rounds 3] [--seconds 2] [--json results.json]

One server (`python -m app`, one worker, pinned to CPU 0 where the machine has two or more)
serves the demo iris forest (version 2) on both ports; one closed-loop client (pinned to CPU 1)
calls it with Triton's own clients, unchanged: tritonclient.http with JSON tensors, with binary
tensors (its default), and tritonclient.grpc (raw tensors, its default). Rounds interleave the
protocols (A B C A B C ...) so that the machine's noise hits each alike; rows/s and p99 are over
every call of every round. Client-side encoding and decoding count: that is what a caller pays.
Needs the `dev` extra (tritonclient).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from benchmarks.failures import BenchmarkFailed, exits_non_zero_on_failure, require
from benchmarks.servers import REPO, our_server
from loadtest.server import free_port

STORE = REPO / "models_store"
MODEL = "iris"
ROWS = (1, 64, 1024)
PROTOCOLS = ("HTTP JSON", "HTTP binary", "gRPC")

Call = Callable[[], object]


def _calls(http_url: str, grpc_url: str, rows: np.ndarray) -> dict[str, Call]:
    http = triton_http.InferenceServerClient(http_url)
    grpc = triton_grpc.InferenceServerClient(grpc_url)

    def http_call(binary: bool) -> Call:
        given = triton_http.InferInput("input", list(rows.shape), "FP32")
        given.set_data_from_numpy(rows, binary_data=binary)
        outputs = [
            triton_http.InferRequestedOutput(name, binary_data=binary)
            for name in ("label", "probabilities")
        ]
        return lambda: http.infer(MODEL, [given], outputs=outputs).as_numpy("probabilities")

    given = triton_grpc.InferInput("input", list(rows.shape), "FP32")
    given.set_data_from_numpy(rows)
    return {
        "HTTP JSON": http_call(binary=False),
        "HTTP binary": http_call(binary=True),
        "gRPC": lambda: grpc.infer(MODEL, [given]).as_numpy("probabilities"),
    }


def _run(call: Call, seconds: float) -> list[float]:
    latencies = []
    deadline = time.perf_counter() + seconds
    try:
        while (started := time.perf_counter()) < deadline:
            call()
            latencies.append(time.perf_counter() - started)
    except Exception as exc:  # the client's errors: a failed call voids the figures
        raise BenchmarkFailed(f"a call failed: {exc}") from exc
    return latencies


def _check_answers(calls: dict[str, Call], rows: np.ndarray) -> None:
    """Every protocol answers the probabilities onnxruntime gives for the same rows."""
    session = ort.InferenceSession(str(STORE / MODEL / "2" / "model.onnx"))
    expected = session.run(["probabilities"], {"input": rows})[0]
    for protocol, call in calls.items():
        answer = np.asarray(call())
        require(
            answer.shape == expected.shape and np.allclose(answer, expected, atol=1e-6),
            f"{protocol} at {len(rows)} rows answered other probabilities than onnxruntime",
        )


def measure(rounds: int, seconds: float) -> dict[str, dict[int, dict[str, float]]]:
    grpc_port = free_port()
    cpus = os.cpu_count() or 1
    server_cpu = "0" if cpus >= 2 else None
    with our_server(STORE, extra_env={"GRPC_PORT": str(grpc_port)}, cpu=server_cpu) as server:
        if server_cpu is not None:
            os.sched_setaffinity(0, {1})
        http_url = server.url.removeprefix("http://")
        data = np.random.default_rng(0).uniform(0.1, 7.9, (max(ROWS), 4)).astype(np.float32)
        results: dict[str, dict[int, dict[str, float]]] = {p: {} for p in PROTOCOLS}
        for n in ROWS:
            calls = _calls(http_url, f"127.0.0.1:{grpc_port}", data[:n])
            latencies: dict[str, list[float]] = {p: [] for p in PROTOCOLS}
            _check_answers(calls, data[:n])
            for call in calls.values():
                _run(call, 0.5)  # warm-up: connections, first-call costs
            for _ in range(rounds):
                for protocol, call in calls.items():
                    latencies[protocol] += _run(call, seconds)
            for protocol, samples in latencies.items():
                results[protocol][n] = {
                    "rows_per_s": n * len(samples) / sum(samples),
                    "p99_ms": float(np.percentile(samples, 99)) * 1000,
                    "calls": len(samples),
                }
    return results


def table(results: dict[str, dict[int, dict[str, float]]]) -> str:
    lines = [
        "| rows per call | " + " | ".join(f"{p} rows/s | {p} p99 ms" for p in PROTOCOLS) + " |",
        "| ---: | " + " | ".join("---: | ---:" for _ in PROTOCOLS) + " |",
    ]
    for n in ROWS:
        cells = []
        for protocol in PROTOCOLS:
            r = results[protocol][n]
            cells.append(f"{r['rows_per_s']:,.0f} | {r['p99_ms']:.2f}")
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    grpc, binary = results["gRPC"][1024], results["HTTP binary"][1024]
    lines.append("")
    lines.append(
        f"gRPC / HTTP binary at 1,024 rows: {grpc['rows_per_s'] / binary['rows_per_s']:.2f}x "
        "the rows/s"
    )
    return "\n".join(lines)


@exits_non_zero_on_failure
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="per protocol per round")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    results = measure(args.rounds, args.seconds)
    print(table(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
