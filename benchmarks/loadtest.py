"""Runs Locust headless against a freshly started server and summarises the latencies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.servers import REPO, our_server

LOCUSTFILE = REPO / "benchmarks" / "locustfile.py"
USER_CLASSES = ("SinglePredictUser", "BatchPredictUser", "FloorUser")
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class RouteStats:
    route: str
    requests: int
    failures: int
    requests_per_s: float
    percentiles_ms: dict[int, float]


def run_locust(
    url: str, users_per_class: int, seconds: int, rate_per_user: float
) -> dict[str, RouteStats]:
    """Run every user class for `seconds`; returns the stats of each route."""
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "latencies.json"
        users = users_per_class * len(USER_CLASSES)
        env = {
            **os.environ,
            "LATENCY_DUMP": str(dump),
            "RATE_PER_USER": str(rate_per_user),
            "PYTHONPATH": str(REPO),
        }
        command = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "--host", url, "-u", str(users), "-r", str(users), "-t", f"{seconds}s",
            "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "5", *USER_CLASSES,
        ]  # fmt: skip
        # Locust exits 1 when any request failed; the failures are read from the dump instead.
        subprocess.run(command, cwd=REPO, env=env, check=False, capture_output=True)
        data = json.loads(dump.read_text())
    stats = {}
    for route in sorted(set(data["samples"]) | set(data["failures"])):
        times = np.array(data["samples"].get(route, []), dtype=float)
        stats[route] = RouteStats(
            route=route,
            requests=len(times),
            failures=int(data["failures"].get(route, 0)),
            requests_per_s=len(times) / seconds,
            percentiles_ms={
                p: float(np.percentile(times, p)) if len(times) else float("nan")
                for p in PERCENTILES
            },
        )
    return stats


def measure_our_server(
    store: Path, workers: int, users_per_class: int, seconds: int, rate_per_user: float
) -> dict[str, RouteStats]:
    with our_server(store, workers) as server:
        return run_locust(server.url, users_per_class, seconds, rate_per_user)


def markdown_table(stats: dict[str, RouteStats]) -> str:
    lines = [
        "| route | requests | failures | req/s | p50 ms | p95 ms | p99 ms |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in stats.values():
        p = s.percentiles_ms
        lines.append(
            f"| `{s.route}` | {s.requests} | {s.failures} | {s.requests_per_s:.0f} "
            f"| {p[50]:.2f} | {p[95]:.2f} | {p[99]:.2f} |"
        )
    return "\n".join(lines)
