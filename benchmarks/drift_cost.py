"""What drift counting costs the answered requests: the demo iris served with and without a
profile.json on the version that answers.

    python -m benchmarks.drift_cost [--rounds 5] [--seconds 8] [--connections 8]

Both servers run at once, on copies of the demo store that differ only by that file; each
round drives one then the other with wrk (the order alternating from round to round), first
with single-row POSTs, then with 64-row batches. It prints the medians over rounds and the
ratios that the README's targets are about: single-row p50 (profiled / plain) and 64-row
throughput (profiled / plain). It also checks that the profiled server did count: its drift
windows closed. Last, it times the counting in process: what a request adds on its path, and
what the monitor spends a row between requests (steadier than wrk on a busy machine).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
from sklearn.datasets import load_iris

from app.config import Settings
from benchmarks.bodies import BATCH, BATCH_ROWS, SINGLE
from benchmarks.failures import exits_non_zero_on_failure, has_prediction, has_predictions
from benchmarks.options import alternating, rounds_parser
from benchmarks.servers import demo_stores, our_server
from benchmarks.wrk import WrkResult, median, run_wrk
from ml.config import ModelConfig
from ml.drift.windows import WindowRule, advance, new_state
from ml.export.profile import build_profile
from ml.model import load_model

IRIS_VERSION = 2  # the version that answers requests naming none
P50_TARGET = 1.02  # profiled p50 at most 2% above plain
THROUGHPUT_TARGET = 0.97  # profiled batch throughput at most 3% below plain


def write_profile(version_dir: Path) -> None:
    """profile.json for the demo iris, from the iris data and the version's own answers."""
    model = load_model("iris", IRIS_VERSION, version_dir, ModelConfig())
    rows = load_iris().data.astype(np.float32)
    feed = {model.signature.inputs[0].name: rows}
    outputs = model.session.run(None, feed)
    assert model.vocabulary is not None
    profile = build_profile(
        feed,
        list(model.signature.feature_names),
        outputs,
        per_column=False,
        classes=list(model.vocabulary.classes),
        labels=list(model.vocabulary.keys),
        min_rows=len(rows),
    )
    (version_dir / "profile.json").write_text(json.dumps(profile))


def counting_cost(version_dir: Path, batch_rows: int, batches: int = 2000) -> dict[str, float]:
    """What counting costs in process, the best of a few repetitions: the request path's
    `add` per request, and the monitor's binning and judging per row."""
    model = load_model("iris", IRIS_VERSION, version_dir, ModelConfig())
    counter = model.drift
    assert counter is not None
    rows = json.loads(BATCH)["instances"][:batch_rows]
    arrays = model.codec.encode(rows, ("instances",))
    raw = model.session.run(None, arrays)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    rule = WindowRule(settings.drift_window_rows, settings.drift_window_s, settings.drift_min_rows)
    state = new_state(0.0)
    adds, monitor = [], []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(batches):
            counter.add(arrays, raw, batch_rows)
        adds.append((time.perf_counter() - started) / batches)
        started = time.perf_counter()
        marks = counter.absorb(counter.take(), rule.rows, state["open_rows"])
        advance(state, counter.profile, {counter.serial: counter.total}, marks, rule, 1.0)
        monitor.append((time.perf_counter() - started) / (batches * batch_rows))
    return {"add_us_per_request": min(adds) * 1e6, "monitor_us_per_row": min(monitor) * 1e6}


def stores(root: Path) -> dict[str, Path]:
    copies = demo_stores(root, "plain", "profiled")
    write_profile(copies["profiled"] / "iris" / str(IRIS_VERSION))
    return copies


@exits_non_zero_on_failure
def main(argv: Sequence[str] | None = None) -> int:
    parser = rounds_parser(__doc__, rounds=5, seconds=8)
    args = parser.parse_args(argv)
    single: dict[str, list[WrkResult]] = {"plain": [], "profiled": []}
    batch: dict[str, list[WrkResult]] = {"plain": [], "profiled": []}
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        servers = {
            name: stack.enter_context(our_server(store))
            for name, store in stores(Path(folder)).items()
        }
        for server in servers.values():
            run_wrk(server.url + "/predict", SINGLE, args.connections, 2)  # warm-up
        for round_index in range(args.rounds):
            for name in alternating(servers, round_index):
                url = servers[name].url
                one = run_wrk(
                    url + "/predict", SINGLE, args.connections, args.seconds, check=has_prediction
                )
                many = run_wrk(
                    url + "/predict/batch",
                    BATCH,
                    args.connections,
                    args.seconds,
                    check=has_predictions(BATCH_ROWS),
                )
                single[name].append(one)
                batch[name].append(many)
                print(
                    f"round {round_index + 1} {name:8} single p50 {one.p50_ms:5.2f} ms "
                    f"{one.requests_per_s:7.0f} req/s | batch {many.requests_per_s:6.0f} req/s "
                    f"({many.requests_per_s * BATCH_ROWS:,.0f} rows/s) "
                    f"errors {one.errors + many.errors}",
                    flush=True,
                )
        drift = httpx.get(servers["profiled"].url + "/models/iris/drift").json()
        closed = {v["version"]: v.get("windows_closed") for v in drift["versions"]}

    print("\n| server | single p50 ms | single p99 ms | single req/s | 64-row req/s |")
    print("| --- | --- | --- | --- | --- |")
    for name in single:
        one, many = single[name], batch[name]
        print(
            f"| {name} | {median(one, 'p50_ms'):.2f} | {median(one, 'p99_ms'):.2f} | "
            f"{median(one, 'requests_per_s'):,.0f} | {median(many, 'requests_per_s'):,.0f} |"
        )
    rate = "requests_per_s"
    p50 = median(single["profiled"], "p50_ms") / median(single["plain"], "p50_ms")
    throughput = median(batch["profiled"], rate) / median(batch["plain"], rate)
    print(
        f"\nprofiled / plain: single-row p50 {p50:.3f}x (target <= {P50_TARGET}), "
        f"64-row throughput {throughput:.3f}x (target >= {THROUGHPUT_TARGET})"
    )
    print(f"drift windows closed by the profiled server, by version: {closed}")
    with tempfile.TemporaryDirectory() as folder:
        version_dir = stores(Path(folder))["profiled"] / "iris" / str(IRIS_VERSION)
        for rows in (1, BATCH_ROWS):
            cost = counting_cost(version_dir, rows)
            print(
                f"in process, {rows}-row requests: add {cost['add_us_per_request']:.2f} us a "
                f"request on the request path; binning and windows {cost['monitor_us_per_row']:.2f}"
                " us a row in the monitor, between requests"
            )
    if not closed.get(IRIS_VERSION):
        print("error: the profiled server closed no drift window: nothing was counted")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
