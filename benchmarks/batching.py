"""Where adaptive batching pays off: a heavier model, with and without `[batching]`.

    python -m benchmarks.batching [--seconds 8] [--rounds 2]

Builds a temporary store holding the same MLP twice (scikit-learn's digits, two hidden layers
of 512): `mlp` without batching and `mlp_batched` with `[batching]`, then drives single-row
POSTs at 1 and at 32 connections with wrk. Writes benchmarks/results/batching.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks.failures import exits_non_zero_on_failure, has_prediction
from benchmarks.servers import REPO, our_server
from benchmarks.wrk import WrkResult, median, run_wrk

MAX_BATCH_SIZE = 32
MAX_DELAY_MS = 2.0


def build_store(root: Path) -> list[float]:
    """The MLP exported twice; returns one digits row to send."""
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    from ml.export import export_model

    digits = load_digits()
    x = digits.data.astype("float32")
    model = MLPClassifier(hidden_layer_sizes=(512, 512), max_iter=30, random_state=0)
    model.fit(x, digits.target)
    for name in ("mlp", "mlp_batched"):
        export_model(model, root, name, x[:20], rtol=1e-3, atol=1e-4)
    (root / "mlp_batched" / "model.toml").write_text(
        f"[batching]\nmax_batch_size = {MAX_BATCH_SIZE}\nmax_delay_ms = {MAX_DELAY_MS}\n"
    )
    return [float(v) for v in x[0]]


@exits_non_zero_on_failure
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Adaptive batching on a heavier model.")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    store = Path(tempfile.mkdtemp(prefix="batching-store-"))
    try:
        row = build_store(store)
        results: dict[tuple[str, int], list[WrkResult]] = {}
        with our_server(store) as server:
            url = server.url
            for _ in range(args.rounds):
                for connections in (1, 32):
                    for name in ("mlp", "mlp_batched"):
                        body = json.dumps({"model": name, "features": row})
                        run_wrk(url + "/predict", body, connections, 2)  # warm-up
                        result = run_wrk(
                            url + "/predict", body, connections, args.seconds, check=has_prediction
                        )
                        results.setdefault((name, connections), []).append(result)
                        print(name, connections, result, flush=True)
    finally:
        shutil.rmtree(store)

    lines = [
        f"MLP 64-512-512-10 on digits, single-row POST /predict, 1 worker; `mlp_batched` has "
        f"`[batching] max_batch_size = {MAX_BATCH_SIZE}, max_delay_ms = {MAX_DELAY_MS}`. "
        f"Medians of {args.rounds} rounds of {args.seconds:g} s.",
        "",
        "| connections | model | req/s | p50 ms | p99 ms |",
        "| --- | --- | --- | --- | --- |",
    ]
    for connections in (1, 32):
        for name in ("mlp", "mlp_batched"):
            runs = results[name, connections]
            lines.append(
                f"| {connections} | {name} | {median(runs, 'requests_per_s'):,.0f} "
                f"| {median(runs, 'p50_ms'):.2f} | {median(runs, 'p99_ms'):.2f} |"
            )
    lines.append("")
    for connections in (1, 32):
        batched, plain = results["mlp_batched", connections], results["mlp", connections]
        gain = median(batched, "requests_per_s") / median(plain, "requests_per_s")
        lines.append(f"- {connections} connection(s): batching gives {gain:.2f}x the throughput")
    growth = median(results["mlp_batched", 1], "p99_ms") - median(results["mlp", 1], "p99_ms")
    lines.append(
        f"- p99 at 1 connection moves by {growth:+.2f} ms with batching "
        f"(the bound is max_delay_ms = {MAX_DELAY_MS})"
    )
    text = "\n".join(lines)
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "batching.md").write_text(text + "\n")
    print("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
