"""The latency guard: exits non-zero, naming the budget, when this build is too slow.

    python -m benchmarks.guard [--seconds 25] [--budgets benchmarks/budgets.toml]

Starts the server on the demo store, runs Locust at the fixed load of budgets.toml, and checks
each route's failures, its p50/p95/p99 against absolute ceilings, and the same percentiles as
ratios to the floor route measured in the same run.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.loadtest import PERCENTILES, RouteStats, markdown_table, measure_our_server
from benchmarks.servers import REPO

BUDGETS = REPO / "benchmarks" / "budgets.toml"


def broken_budgets(
    stats: Mapping[str, RouteStats], routes: Mapping[str, Mapping[str, Any]], floor: str
) -> list[str]:
    """Every budget the run broke, in words; empty when the build is within budget."""
    broken = []
    base = stats.get(floor)
    for route, budget in routes.items():
        measured = stats.get(route)
        if measured is None or measured.requests == 0:
            broken.append(f"{route}: no successful request was measured")
            continue
        if measured.failures > budget.get("max_failures", 0):
            broken.append(
                f"{route}: {measured.failures} failed requests "
                f"(budget {budget.get('max_failures', 0)})"
            )
        for p in PERCENTILES:
            value = measured.percentiles_ms[p]
            ceiling = budget.get(f"p{p}_ms")
            if ceiling is not None and value > ceiling:
                broken.append(f"{route}: p{p} {value:.2f} ms > ceiling {ceiling} ms")
            ratio_budget = budget.get(f"p{p}_ratio")
            if ratio_budget is not None and base is not None and base.requests:
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
    seconds = args.seconds or load["seconds"]
    stats = measure_our_server(
        args.store, 1, load["users_per_route"], seconds, load["rate_per_user"]
    )
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
