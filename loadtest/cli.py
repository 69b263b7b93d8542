"""`model-loadtest`: load-test one model (and compare two of its versions) before a release.

    model-loadtest --store models_store --model iris --version 2 --compare 1
    model-loadtest --url http://127.0.0.1:8000 --model churn --version 4 --compare 3 \\
        --store /path/to/store --budgets budgets.toml

With `--url`, the running server there is tested; without it, a server is started on `--store`
for the run. Rows are built from `GET /models/{name}` and, where the version has one, from its
samples.json (`--samples`, or found in `--store`). Exit status: 0 when every budget holds, 1 when
one is broken (each is named), 2 when the run could not be made (the message says why).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from loadtest.budgets import Budgets, broken_budgets
from loadtest.categories import string_categories
from loadtest.charts import write_charts
from loadtest.engine import LOCUSTFILE, GeneratorFailed
from loadtest.payloads import Route, Stream, model_stream, write_streams
from loadtest.report import generator_note, markdown, write_csv
from loadtest.rows import (
    STRING_VALUES,
    ModelInputs,
    Row,
    RowError,
    check_rows,
    describe,
    find_samples,
    generate_rows,
    read_samples,
)
from loadtest.server import model_server
from loadtest.sweep import Step, SweepPlan, SweepResult, ToolBug, run_sweep

CLOSED_LOOP_LEVELS = "1,2,4,8,16,32,64"
GENERATED_ROWS = 256


def _numbers(text: str) -> tuple[float, ...]:
    values = tuple(float(part) for part in text.split(",") if part.strip())
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: a comma-separated list of positive numbers")
    return values


def _processes(text: str) -> int:
    if text == "auto":
        # Half the cores, so that a server on this machine keeps the other half; one on a
        # machine of two cores or fewer, where a second generator would only slow the server.
        return max(1, min(4, (os.cpu_count() or 1) // 2))
    return int(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="model-loadtest", description=__doc__.split("\n")[0] if __doc__ else None
    )
    where = p.add_argument_group("what to test")
    where.add_argument("--url", help="a running server; without it, one is started on --store")
    where.add_argument(
        "--store",
        type=Path,
        help="the model store: samples.json files, and the store served when there is no --url",
    )
    where.add_argument("--model", required=True)
    where.add_argument("--version", type=int, help="the candidate (default: the default version)")
    where.add_argument(
        "--compare",
        type=int,
        metavar="VERSION",
        help="the version to compare with, run at every level too",
    )
    where.add_argument("--route", type=Route, choices=list(Route), default=Route.PREDICT)
    where.add_argument(
        "--batch-rows",
        type=int,
        help="rows per request on the batch route (default 64) and v2 routes (default 1)",
    )
    where.add_argument(
        "--samples",
        type=Path,
        help="the candidate's samples.json (else found in --store, else rows are generated)",
    )
    load = p.add_argument_group("load")
    load.add_argument(
        "--users",
        type=_numbers,
        default=_numbers(CLOSED_LOOP_LEVELS),
        help=f"closed-loop levels (default {CLOSED_LOOP_LEVELS})",
    )
    load.add_argument(
        "--rates",
        type=_numbers,
        help="open loop instead: offered req/s per level, e.g. 100,200,400,800",
    )
    load.add_argument(
        "--pool", type=int, default=32, help="open loop: users sharing the offered rate"
    )
    load.add_argument("--seconds", type=int, default=10, help="per step")
    load.add_argument(
        "--processes",
        type=_processes,
        default="auto",
        help="Locust processes (default auto: half the cores, at most 4)",
    )
    load.add_argument(
        "--plateau-steps",
        type=int,
        default=2,
        help="closed loop: stop after this many levels without 5%% more throughput",
    )
    gate = p.add_argument_group("budgets (a broken one exits 1)")
    gate.add_argument("--budgets", type=Path, help="a TOML file with a [budgets] table")
    gate.add_argument("--max-p99-ms", type=float)
    gate.add_argument("--max-p50-ms", type=float)
    gate.add_argument("--min-throughput", type=float)
    gate.add_argument("--max-error-rate", type=float)
    gate.add_argument("--max-p99-ratio", type=float)
    gate.add_argument("--max-p50-ratio", type=float)
    gate.add_argument("--min-throughput-ratio", type=float)
    out = p.add_argument_group("output")
    out.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks") / "results",
        help="reports go to OUT/<timestamp>/ (default benchmarks/results)",
    )
    out.add_argument(
        "--ui",
        action="store_true",
        help="open Locust's web UI with the candidate's requests instead of a sweep",
    )
    out.add_argument("--ui-port", type=int, default=8089, help="the web UI's port")
    return p


@dataclass(frozen=True)
class Target:
    inputs: ModelInputs
    rows: list[Row]
    source: str  # where the rows came from, for the report and for error messages


def _rows_for(inputs: ModelInputs, samples: Path | None, store: Path | None) -> Target:
    path = samples or (find_samples(store, inputs.model, inputs.version) if store else None)
    if path is None:
        source = f"{GENERATED_ROWS} rows generated from GET /models/{inputs.model}"
        strings = [f.name for f in inputs.features if f.type == "string"]
        graph = store / inputs.model / str(inputs.version) / "model.onnx" if store else None
        categories = {}
        if strings and graph is not None and graph.is_file():
            categories = string_categories(graph, strings)
            source += f", string values from {graph}"
        elif strings:
            source += f", string columns {', '.join(strings)} drawn from {list(STRING_VALUES)}"
        rows = generate_rows(inputs, GENERATED_ROWS, categories=categories)
        return Target(inputs, rows, source)
    rows = read_samples(path)
    check_rows(inputs, rows, str(path))
    return Target(inputs, rows, f"{len(rows)} rows of {path}")


def targets(client: httpx.Client, args: argparse.Namespace) -> list[Target]:
    """The candidate, and the compared version: the same rows for both where they take the same
    inputs, so that the comparison is of the versions alone."""
    candidate_inputs = describe(client, args.model, args.version)
    candidate = _rows_for(candidate_inputs, args.samples, args.store)
    if args.compare is None:
        return [candidate]
    other = describe(client, args.model, args.compare)
    if other.tensors == candidate_inputs.tensors and other.named == candidate_inputs.named:
        return [candidate, Target(other, candidate.rows, candidate.source)]
    return [candidate, _rows_for(other, None, args.store)]


def streams_for(found: Sequence[Target], args: argparse.Namespace) -> list[Stream]:
    batch_rows = args.batch_rows or (64 if args.route is Route.BATCH else 1)
    return [
        model_stream(
            t.inputs,
            t.rows,
            args.route,
            batch_rows,
            pin_version=True,
            name=f"{t.inputs.model} v{t.inputs.version}",
        )
        for t in found
    ]


def preflight(client: httpx.Client, streams: Sequence[Stream], found: Sequence[Target]) -> None:
    """Send every ready-made request once: a refusal is reported before any load is made."""
    for stream, target in zip(streams, found, strict=True):
        for index in range(len(stream.bodies)):
            body, headers = stream.request(index)
            response = client.request(stream.method, stream.path, content=body, headers=headers)
            if 400 <= response.status_code < 500:
                raise ToolBug(
                    f"the server refused a request built for {stream.name} from "
                    f"{target.source} with {response.status_code}: {response.text[:800]}"
                )
            if response.status_code != 200:
                raise GeneratorFailed(
                    f"{stream.name} answered {response.status_code} before any load, to a "
                    f"request built from {target.source} (string values a model does not know "
                    "fail some models: give the version's samples.json with --samples or "
                    f"--store): {response.text[:800]}"
                )


@contextlib.contextmanager
def server_url(args: argparse.Namespace) -> Iterator[str]:
    if args.url:
        yield args.url.rstrip("/")
        return
    if args.store is None:
        raise RowError("give --url (a running server) or --store (a store to serve)")
    with model_server(args.store) as served:
        yield served.url


def budgets_from(args: argparse.Namespace) -> Budgets:
    base = Budgets.from_toml(args.budgets) if args.budgets else Budgets()
    return base.merged(
        max_p99_ms=args.max_p99_ms,
        max_p50_ms=args.max_p50_ms,
        min_throughput=args.min_throughput,
        max_error_rate=args.max_error_rate,
        max_p99_ratio=args.max_p99_ratio,
        max_p50_ratio=args.max_p50_ratio,
        min_throughput_ratio=args.min_throughput_ratio,
    )


def print_step(step: Step) -> None:
    st = step.stats
    print(
        f"  {step.version:36} level {step.level:>6g}  {st.throughput:8,.0f} req/s  "
        f"p50 {st.p50:7.2f} ms  p99 {st.p99:7.2f} ms  errors {st.client_errors + st.other_errors}",
        flush=True,
    )


def write_report(
    result: SweepResult, found: Sequence[Target], budgets: Budgets, broken: list[str], out: Path
) -> Path:
    folder = out / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(result, folder / "steps.csv")
    charts = write_charts(result, folder)
    title = f"Load test of {result.candidate}" + (
        f" against {result.versions[1]}" if len(result.versions) > 1 else ""
    )
    text = markdown(result, title, budgets, broken, charts)
    rows = "\n".join(f"- Rows of {t.inputs.model} v{t.inputs.version}: {t.source}." for t in found)
    text = text.replace("\n\n## Steps", f"\n{rows}\n\n## Steps", 1)
    (folder / "report.md").write_text(text)
    return folder


def open_ui(url: str, streams: Sequence[Stream], port: int) -> int:
    """Locust's web UI with the candidate's requests, until Ctrl-C."""
    with tempfile.TemporaryDirectory(prefix="loadtest-ui-") as tmp:
        path = Path(tmp) / "streams.json"
        write_streams(path, streams[:1])
        env = {**os.environ, "LOADTEST_STREAMS": str(path)}
        command = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", url,
            "--web-host", "127.0.0.1", "--web-port", str(port),
        ]  # fmt: skip
        print(f"Locust's web UI: http://127.0.0.1:{port} (Ctrl-C ends it); {streams[0].name}")
        return subprocess.run(command, env=env, check=False).returncode  # noqa: S603


def run(args: argparse.Namespace) -> int:
    budgets = budgets_from(args)
    with server_url(args) as url:
        with httpx.Client(base_url=url, timeout=30.0) as client:
            found = targets(client, args)
            streams = streams_for(found, args)
            preflight(client, streams, found)
        if args.ui:
            return open_ui(url, streams, args.ui_port)
        plan = SweepPlan(
            levels=args.rates or args.users,
            seconds=args.seconds,
            processes=args.processes,
            open_loop=args.rates is not None,
            pool=args.pool,
            stop_p99_ms=budgets.max_p99_ms,
            stop_p50_ms=budgets.max_p50_ms,
            plateau_steps=args.plateau_steps,
        )
        print(f"Sweeping {', '.join(s.name for s in streams)} on {url} ({args.route} route):")
        result = run_sweep(url, streams, plan, print_step)
    broken = broken_budgets(result, budgets)
    folder = write_report(result, found, budgets, broken, args.out)
    print(f"Stopped: {result.stop_reason}.\n{generator_note(result)}\nReport: {folder}/report.md")
    if broken:
        print("Budgets BROKEN:")
        for line in broken:
            print(f"- {line}")
        return 1
    print("Every budget holds.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # A SIGTERM unwinds like an error, so that the server this run started is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return run(args)
    except (RowError, ToolBug, GeneratorFailed, ValueError, OSError) as exc:
        print(f"model-loadtest: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
