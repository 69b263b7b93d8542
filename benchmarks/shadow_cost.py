"""What shadow scoring costs the answered requests: the demo iris with and without a rollout
whose candidate scores every row the default answers (`shadow_percent = 100`).

    python -m benchmarks.shadow_cost [--rounds 4] [--seconds 8] [--connections 8]

Both servers run on copies of the demo store, started in turn each round (A B A B ...), driven
by wrk with single-row POSTs naming no version; medians over rounds, and the ratios of p99 and
throughput (shadow / plain), which is what to read on a shared machine. The report also gives
how many rows the candidate compared and dropped, from GET /models/iris/rollout.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import httpx

from benchmarks.bodies import SINGLE
from benchmarks.failures import exits_non_zero_on_failure, has_prediction
from benchmarks.options import rounds_parser
from benchmarks.servers import demo_stores, our_server
from benchmarks.wrk import WrkResult, median, median_table, run_wrk

SHADOW_TOML = "version_policy = 'latest:2'\n[rollout]\ncandidate = 1\nshadow_percent = 100\n"


def stores(root: Path) -> dict[str, Path]:
    copies = demo_stores(root, "plain", "shadow")
    (copies["shadow"] / "iris" / "model.toml").write_text(SHADOW_TOML)
    return copies


@exits_non_zero_on_failure
def main(argv: Sequence[str] | None = None) -> int:
    parser = rounds_parser(__doc__, rounds=4, seconds=8)
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
                    print(f"round {round_index + 1} {name:6} {result.summary()}", flush=True)

    shadow, plain = results["shadow"], results["plain"]
    print("\n" + median_table(results, "server"))
    print(
        f"\nshadow / plain: p99 {median(shadow, 'p99_ms') / median(plain, 'p99_ms'):.2f}x, "
        f"throughput {median(shadow, 'requests_per_s') / median(plain, 'requests_per_s'):.2f}x"
    )
    compared = sum(c["compared"] for c in shadow_counts)
    dropped = sum(c["dropped"] for c in shadow_counts)
    print(f"candidate rows compared {compared:,}, dropped {dropped:,} (queue full)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
