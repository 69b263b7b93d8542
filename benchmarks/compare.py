"""Our service against the naive FastAPI wrapper and the bare ASGI floor, back to back; then
our Open Inference Protocol (V2) route against our /predict.

    python -m benchmarks.compare [--rounds 2] [--seconds 10] [--connections 8] [--only v2]

Each round starts each server in turn (A B C D A B C D ...) on the same iris forest and drives
it with wrk: single-row POSTs, then 64-row batches. Medians over rounds; the ratios are what to
read, since this machine is shared and absolute rates move by ±30% between runs. The naive
wrapper comes in both forms teams write (benchmarks/baselines/naive_fastapi.py): with a return
annotation, the stronger of the two, and without one.

The V2 section starts our server once and drives it with one connection (a sequential client,
so requests/s is the inverse of the time per request), in rounds that alternate /predict with
one row, /v2 infer with one row in JSON, and /v2 infer with 1,024 rows in binary tensor data
(binary outputs, tritonclient's defaults), in reverse order every other round. The /v2 JSON to
/predict ratio is the median of each round's ratio: the two run back to back in a round, so a
busy minute on the shared machine slows both. `--only v2` runs this section alone, `--only
baselines` the first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from benchmarks.bodies import BATCH, BATCH_ROWS, SINGLE, V2_BINARY_ROWS, V2_SINGLE, v2_binary
from benchmarks.failures import (
    Check,
    exits_non_zero_on_failure,
    has_outputs,
    has_prediction,
    has_predictions,
)
from benchmarks.options import alternating, rounds_parser
from benchmarks.servers import REPO, Served, baseline_server, our_server
from benchmarks.wrk import WrkResult, median, round_ratios, run_wrk

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
    # Ours and the floor run one after the other in each round.
    paired, rounds = round_ratios(ours["single"], bare["single"])
    lines += [
        f"- single-row throughput, ours / bare ASGI: {ratio(ours['single'], bare['single']):.2f}x "
        f"(median of the rounds' ratios {paired:.2f}x: {rounds})",
        f"- 64-row batch rows/s, ours / bare ASGI: {ratio(ours['batch'], bare['batch']):.2f}x",
    ]
    return "\n".join(lines)


V2_PATH = "/v2/models/iris/infer"
PREDICT_ONE = "/predict, 1 row, JSON"
V2_JSON_ONE = "/v2 infer, 1 row, JSON"
V2_BINARY_MANY = f"/v2 infer, {V2_BINARY_ROWS:,} rows, binary"


def measure_v2(rounds: int, seconds: float) -> dict[str, list[WrkResult]]:
    """Our server, one connection: /predict and /v2 infer alternating within each round."""
    binary, headers = v2_binary()
    outputs = has_outputs("label", "probabilities")
    calls: dict[str, tuple[str, str | bytes, Check, dict[str, str] | None]] = {
        PREDICT_ONE: ("/predict", SINGLE, has_prediction, None),
        V2_JSON_ONE: (V2_PATH, V2_SINGLE, outputs, None),
        V2_BINARY_MANY: (V2_PATH, binary, outputs, headers),
    }
    results: dict[str, list[WrkResult]] = {name: [] for name in calls}
    with SERVERS[OURS]() as server:
        for path, body, check, extra in calls.values():
            run_wrk(server.url + path, body, 1, 1, check=check, headers=extra)  # warm-up
        for round_index in range(rounds):
            for name in alternating(calls, round_index):
                path, body, check, extra = calls[name]
                result = run_wrk(server.url + path, body, 1, seconds, check=check, headers=extra)
                results[name].append(result)
                print(
                    f"round {round_index + 1} {name:32} {result.requests_per_s:9.0f} req/s  "
                    f"p50 {result.p50_ms:6.3f} ms  errors {result.errors}",
                    flush=True,
                )
    return results


def report_v2(results: dict[str, list[WrkResult]]) -> str:
    per_request = {name: 1e6 / median(r, "requests_per_s") for name, r in results.items()}
    lines = [
        "| call | req/s | µs per request | p50 ms | rows/s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, runs in results.items():
        rows = V2_BINARY_ROWS if name == V2_BINARY_MANY else 1
        rate = median(runs, "requests_per_s")
        lines.append(
            f"| {name} | {rate:,.0f} | {per_request[name]:,.0f} | {median(runs, 'p50_ms'):.3f} "
            f"| {rate * rows:,.0f} |"
        )
    # Each round's /predict and /v2 JSON ran back to back; time per request is 1 / req/s.
    ratio, rounds = round_ratios(results[PREDICT_ONE], results[V2_JSON_ONE])
    lines += [
        "",
        "1 connection (a sequential client), 1 worker, wrk and the server sharing the cores.",
        "",
        f"- single-row time per request, /v2 JSON / /predict: {ratio:.2f}x (median of the "
        f"rounds' ratios: {rounds})",
        f"- {V2_BINARY_ROWS:,}-row binary rows/s: "
        f"{median(results[V2_BINARY_MANY], 'requests_per_s') * V2_BINARY_ROWS:,.0f}",
    ]
    return "\n".join(lines)


@exits_non_zero_on_failure
def main(argv: Sequence[str] | None = None) -> int:
    parser = rounds_parser(__doc__, rounds=2, seconds=10)
    parser.add_argument("--only", choices=("baselines", "v2"), help="run one section")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only != "v2":
        text = report(measure(args.rounds, args.seconds, args.connections), args.connections)
        (args.out / "compare.md").write_text(text + "\n")
        print("\n" + text)
    if args.only != "baselines":
        text = report_v2(measure_v2(args.rounds, args.seconds))
        (args.out / "compare-v2.md").write_text(text + "\n")
        print("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
