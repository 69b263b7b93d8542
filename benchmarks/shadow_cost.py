"""What shadow scoring costs the answered requests: the demo iris with and without a rollout
whose candidate scores every row the default answers (`shadow_percent = 100`).

    python -m benchmarks.shadow_cost [--rounds 4] [--seconds 8] [--connections 8]

Both servers run on copies of the demo store, started in turn each round (A B A B ...), driven
by wrk with single-row POSTs naming no version; medians over rounds, and the ratios of p99 and
throughput (shadow / plain), which is what to read on a shared machine. The report also gives
how many rows the candidate compared and dropped, from GET /models/iris/rollout.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path

import httpx

from benchmarks.bodies import SINGLE
from benchmarks.failures import exits_non_zero_on_failure, has_prediction
from benchmarks.servers import REPO, our_server
from benchmarks.wrk import WrkResult, run_wrk

SHADOW_TOML = "version_policy = 'latest:2'\n[rollout]\ncandidate = 1\nshadow_percent = 100\n"


def stores(root: Path) -> dict[str, Path]:
    plain = Path(shutil.copytree(REPO / "models_store", root / "plain"))
    shadow = Path(shutil.copytree(REPO / "models_store", root / "shadow"))
    (shadow / "iris" / "model.toml").write_text(SHADOW_TOML)
    return {"plain": plain, "shadow": shadow}


@exits_non_zero_on_failure
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args(argv)
    results: dict[str, list[WrkResult]] = {"plain": [], "shadow": []}
    shadow_counts: list[dict[str, int]] = []
    with tempfile.TemporaryDirectory() as folder:
        for round_index in range(args.rounds):
            for name, store in stores(Path(folder) / str(round_index)).items():
                with our_server(store) as server:
                    run_wrk(server.url + "/predict", SINGLE, args.connections, 2)  # warm-up
                    result = run_wrk(
                        server.url + "/predict",
                        SINGLE,
                        args.connections,
                        args.seconds,
                        check=has_prediction,
                    )
                    results[name].append(result)
                    if name == "shadow":
                        report = httpx.get(server.url + "/models/iris/rollout").json()
                        shadow_counts.append(report["shadow"])
                    print(
                        f"round {round_index + 1} {name:6} {result.requests_per_s:8.0f} req/s "
                        f"p50 {result.p50_ms:5.2f} ms p99 {result.p99_ms:6.2f} ms "
                        f"errors {result.errors}",
                        flush=True,
                    )

    def med(name: str, field: str) -> float:
        return statistics.median(getattr(r, field) for r in results[name])

    print("\n| server | req/s | p50 ms | p99 ms |\n| --- | --- | --- | --- |")
    for name in results:
        print(
            f"| {name} | {med(name, 'requests_per_s'):,.0f} | {med(name, 'p50_ms'):.2f} | "
            f"{med(name, 'p99_ms'):.2f} |"
        )
    print(
        f"\nshadow / plain: p99 {med('shadow', 'p99_ms') / med('plain', 'p99_ms'):.2f}x, "
        f"throughput {med('shadow', 'requests_per_s') / med('plain', 'requests_per_s'):.2f}x"
    )
    compared = sum(c["compared"] for c in shadow_counts)
    dropped = sum(c["dropped"] for c in shadow_counts)
    print(f"candidate rows compared {compared:,}, dropped {dropped:,} (queue full)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
