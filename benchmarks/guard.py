"""The latency guard: exits non-zero, naming the budget, when this build is too slow.

    python -m benchmarks.guard [--seconds 25] [--budgets benchmarks/budgets.toml]

Starts the server on the demo store and runs the load test's Locust users (loadtest/) at the
fixed load of budgets.toml (each user at most `rate_per_user` req/s, Locust's
constant_throughput): single rows, 64-row batches and the floor route side by side, with rows
built from the model's own description. Checks each route's failures, its
p50/p95/p99 against absolute ceilings, and the same percentiles as ratios to the floor route
measured in the same run.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from benchmarks.servers import REPO, our_server
from loadtest.engine import StepLoad, run_step
from loadtest.payloads import Route, Stream, model_stream
from loadtest.rows import describe, find_samples, generate_rows, read_samples
from loadtest.stats import StepStats, step_stats

BUDGETS = REPO / "benchmarks" / "budgets.toml"
GUARD_PERCENTILES = (50, 95, 99)
BATCH_ROWS = 64
FLOOR_PATH = "/health/live"


def guard_streams(client: httpx.Client, model: str, store: Path) -> list[Stream]:
    """Single rows, batches and the floor, named by route as budgets.toml names them."""
    inputs = describe(client, model)
    samples = find_samples(store, model, inputs.version)
    rows = read_samples(samples) if samples else generate_rows(inputs, 256)
    return [
        model_stream(inputs, rows, Route.PREDICT, 1, pin_version=False, name="/predict"),
        model_stream(inputs, rows, Route.BATCH, BATCH_ROWS, False, name="/predict/batch"),
        Stream(FLOOR_PATH, "GET", FLOOR_PATH),
    ]


def measure(store: Path, model: str, load: Mapping[str, Any], seconds: int) -> dict[str, StepStats]:
    """Every route at `users_per_route` users of `rate_per_user` req/s each, at once."""
    with our_server(store) as server:
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            streams = guard_streams(client, model, store)
        users = load["users_per_route"] * len(streams)  # users take the streams in turn
        # Paced as the budgets were measured: answers' own latency, at most the rate per user.
        step = StepLoad(users, seconds, float(load["rate_per_user"]), pacing="throughput")
        measured = run_step(server.url, streams, step)
    return {name: step_stats(requests) for name, requests in measured.items()}


def markdown_table(stats: Mapping[str, StepStats]) -> str:
    lines = [
        "| route | requests | failures | req/s | p50 ms | p95 ms | p99 ms |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for route, s in stats.items():
        p = s.percentiles_ms
        lines.append(
            f"| `{route}` | {s.requests} | {s.requests - s.ok} | {s.throughput:.0f} "
            f"| {p[50]:.2f} | {p[95]:.2f} | {p[99]:.2f} |"
        )
    return "\n".join(lines)


def broken_budgets(
    stats: Mapping[str, StepStats], routes: Mapping[str, Mapping[str, Any]], floor: str
) -> list[str]:
    """Every budget the run broke, in words; empty when the build is within budget."""
    broken = []
    base = stats.get(floor)
    for route, budget in routes.items():
        measured = stats.get(route)
        if measured is None or measured.ok == 0:
            broken.append(f"{route}: no successful request was measured")
            continue
        failures = measured.requests - measured.ok
        if failures > budget.get("max_failures", 0):
            broken.append(
                f"{route}: {failures} failed requests (budget {budget.get('max_failures', 0)})"
            )
        for p in GUARD_PERCENTILES:
            value = measured.percentiles_ms[p]
            ceiling = budget.get(f"p{p}_ms")
            if ceiling is not None and value > ceiling:
                broken.append(f"{route}: p{p} {value:.2f} ms > ceiling {ceiling} ms")
            ratio_budget = budget.get(f"p{p}_ratio")
            if ratio_budget is not None and base is not None and base.ok:
                ratio = value / base.percentiles_ms[p]
                if ratio > ratio_budget:
                    broken.append(
                        f"{route}: p{p} is {ratio:.2f}x the floor {floor} "
                        f"({value:.2f} vs {base.percentiles_ms[p]:.2f} ms; budget {ratio_budget}x)"
                    )
    return broken


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check latency budgets under a fixed load.")
    parser.add_argument("--budgets", type=Path, default=BUDGETS)
    parser.add_argument("--seconds", type=int, help="override the budgets file's duration")
    parser.add_argument("--store", type=Path, default=REPO / "models_store")
    args = parser.parse_args(argv)
    config = tomllib.loads(args.budgets.read_text())
    load = config["load"]
    stats = measure(args.store, load["model"], load, args.seconds or load["seconds"])
    print(markdown_table(stats))
    broken = broken_budgets(stats, config["routes"], load["floor"])
    if broken:
        print("\nlatency guard: FAILED")
        for line in broken:
            print(f"- {line}")
        return 1
    print("\nlatency guard: every budget holds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
