"""The release load test: one command, a Markdown report and a chart.

    python -m benchmarks.run [--store models_store] [--workers 1] [--users 4] [--seconds 30]

Starts the server on the chosen store with WORKERS, runs Locust headless (single-row, 64-row
batch and floor users, each at RATE_PER_USER req/s), and writes `report.md` and `latency.png`
under benchmarks/results/<timestamp>/.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt

from benchmarks.loadtest import PERCENTILES, RouteStats, markdown_table, measure_our_server
from benchmarks.servers import REPO


def chart(stats: dict[str, RouteStats], path: Path, title: str) -> None:
    routes = list(stats)
    width = 0.8 / len(PERCENTILES)
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for i, p in enumerate(PERCENTILES):
        positions = [r + i * width for r in range(len(routes))]
        axes.bar(positions, [stats[r].percentiles_ms[p] for r in routes], width, label=f"p{p}")
    axes.set_xticks([r + width for r in range(len(routes))], routes)
    axes.set_ylabel("latency (ms)")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load-test the server with Locust.")
    parser.add_argument("--store", type=Path, default=REPO / "models_store")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--users", type=int, default=4, help="users per route")
    parser.add_argument("--rate", type=float, default=50, help="requests/s per user")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)

    stats = measure_our_server(args.store, args.workers, args.users, args.seconds, args.rate)
    folder = args.out / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    title = (
        f"{args.users} users/route at {args.rate:g} req/s each, WORKERS={args.workers}, "
        f"{args.seconds} s"
    )
    chart(stats, folder / "latency.png", title)
    report = f"# Load test\n\n{title}, store `{args.store}`.\n\n{markdown_table(stats)}\n"
    (folder / "report.md").write_text(report)
    print(report)
    print(f"written to {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
