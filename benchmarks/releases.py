"""This checkout's server against an earlier commit's, side by side: single-row throughput and CPU
time per request, with the access log off (as the other benchmarks run) or on (the default).

    python -m benchmarks.releases --against COMMIT [--rounds 12] [--seconds 2] [--connections 8]
                                  [--access-log]

The earlier commit is checked out into a temporary git worktree; both servers run at once, each
on its own copy of the demo store, and wrk drives one then the other, the order alternating
from round to round. On a shared machine a round can lose half its rate to other load, so
besides the medians it prints the best round of each server, the least disturbed, and the
lowest CPU time per request (the server's user and system time over a round, divided by the
requests wrk counted).
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from benchmarks.bodies import SINGLE
from benchmarks.failures import BenchmarkFailed, exits_non_zero_on_failure, has_prediction
from benchmarks.options import alternating, rounds_parser
from benchmarks.servers import REPO, demo_stores
from benchmarks.wrk import WrkResult, median, run_wrk, run_wrk_with_cpu
from loadtest.server import model_server


@contextlib.contextmanager
def worktree(commit: str, folder: Path) -> Iterator[Path]:
    """`commit` checked out (detached) at `folder` while the block runs, removed after;
    BenchmarkFailed if git cannot check it out."""
    git = ["git", "-C", str(REPO), "worktree"]
    done = subprocess.run(
        [*git, "add", "--detach", str(folder), commit], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise BenchmarkFailed(f"cannot check out {commit!r}: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run([*git, "remove", "--force", str(folder)], check=False)


@exits_non_zero_on_failure
def main(argv: Sequence[str] | None = None) -> int:
    parser = rounds_parser(__doc__, rounds=12, seconds=2)
    parser.add_argument("--against", required=True, help="the earlier commit (hash, tag, branch)")
    parser.add_argument("--access-log", action="store_true", help="both servers log every request")
    args = parser.parse_args(argv)
    env = {"ACCESS_LOG": "true", "LOG_LEVEL": "info"} if args.access_log else {}
    results: dict[str, list[WrkResult]] = {"earlier": [], "this": []}
    cpu: dict[str, list[float]] = {"earlier": [], "this": []}
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        earlier = stack.enter_context(worktree(args.against, Path(folder) / "earlier"))
        stores = demo_stores(Path(folder), "store-earlier", "store-this")
        checkouts = {"earlier": earlier, "this": REPO}
        servers = {
            name: stack.enter_context(
                model_server(stores[f"store-{name}"], extra_env=env, cwd=checkout)
            )
            for name, checkout in checkouts.items()
        }
        for server in servers.values():
            run_wrk(server.url + "/predict", SINGLE, args.connections, 2)  # warm-up
        for round_index in range(args.rounds):
            for name in alternating(servers, round_index):
                result, cpu_us = run_wrk_with_cpu(
                    servers[name], "/predict", SINGLE, args.connections, args.seconds,
                    check=has_prediction,
                )  # fmt: skip
                results[name].append(result)
                cpu[name].append(cpu_us)
                print(f"round {round_index + 1} {name:8} {result.summary()}", flush=True)

    print(f"\naccess log {'on' if args.access_log else 'off'}, {args.connections} connections")
    print("| server | median req/s | best round req/s | lowest CPU µs a request |")
    print("| --- | --- | --- | --- |")
    best_rate = {name: max(r.requests_per_s for r in runs) for name, runs in results.items()}
    for name, runs in results.items():
        label = f"{args.against} (earlier)" if name == "earlier" else "this checkout"
        middle = median(runs, "requests_per_s")
        print(f"| {label} | {middle:,.0f} | {best_rate[name]:,.0f} | {min(cpu[name]):.1f} |")
    best = best_rate["this"] / best_rate["earlier"]
    print(f"\nthis / earlier: best round {best:.3f}x, lowest CPU a request "
          f"{min(cpu['this']) / min(cpu['earlier']):.3f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
