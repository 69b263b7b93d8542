"""Does the server's memory stay flat while versions come and go? RSS over reload cycles.

    python -m benchmarks.reload_memory [--cycles 200] [--model iris]

Starts `python -m app` (one worker, watching off, ADMIN_TOKEN set) on a temporary copy of
models_store, then repeats a cycle: copy the model's highest version to a new version folder
(staged as `.tmp-N`, renamed to `N`), POST /admin/reload, one prediction from the new version,
remove the folder, POST /admin/reload. Version numbers only grow, as in real use. The server's
VmRSS (/proc/<pid>/status) is read at start, after a warm-up and every `--every` cycles; the
table is printed and written to benchmarks/results/reload_memory.md.

Under a `latest:N` policy a cycle also unloads the version that falls out of the newest N and
loads it again when the new one is removed, so it is two loads and two unloads.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.failures import exits_non_zero_on_failure, require
from benchmarks.servers import REPO, demo_store, our_server

TOKEN = "reload-memory-benchmark"
SAMPLE_VALUES = {"number": 0.5, "integer": 1, "string": "a", "boolean": False}


@dataclass(frozen=True, slots=True)
class Sample:
    label: str
    cycle: int
    rss_kib: int


def sample_row(client: httpx.Client, model: str) -> list[Any]:
    """One valid row for `model`, from the features GET /models/{name} lists."""
    answer = client.get(f"/models/{model}")
    answer.raise_for_status()
    return [SAMPLE_VALUES[f["type"]] for f in answer.json()["features"]]


class Cycler:
    """Adds a version, reloads, predicts, removes it, reloads; times the reloads."""

    def __init__(self, client: httpx.Client, model_dir: Path, row: list[Any]) -> None:
        self.client = client
        self.model_dir = model_dir
        self.row = row
        versions = sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
        self.source = model_dir / str(versions[-1])
        self.next_version = versions[-1] + 1
        self.reload_s: list[float] = []

    def _reload(self) -> dict[str, list[dict[str, Any]]]:
        started = time.perf_counter()
        answer = self.client.post(
            "/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60.0
        )
        self.reload_s.append(time.perf_counter() - started)
        require(answer.status_code == 200, f"/admin/reload answered {answer.status_code}")
        report: dict[str, list[dict[str, Any]]] = answer.json()
        require(not report["failed"], f"a reload failed: {report['failed']}")
        return report

    def cycle(self) -> None:
        name, version = self.model_dir.name, self.next_version
        self.next_version += 1
        staged = self.model_dir / f".tmp-{version}"
        shutil.copytree(self.source, staged)
        final = self.model_dir / str(version)
        staged.rename(final)
        loaded = self._reload()["loaded"]
        require({"model": name, "version": version} in loaded, f"version {version} not loaded")
        answer = self.client.post(
            "/predict", json={"model": name, "version": version, "features": self.row}
        )
        require(
            answer.status_code == 200 and answer.json().get("version") == version,
            f"version {version} answered {answer.status_code}: {answer.text[:200]}",
        )
        shutil.rmtree(final)
        unloaded = self._reload()["unloaded"]
        require({"model": name, "version": version} in unloaded, f"version {version} not unloaded")


def checkpoint(done: int, cycles: int, warmup: int, every: int) -> str | None:
    """The name of the RSS reading after cycle `done`, or None when there is none."""
    if done == warmup:
        return "warm-up"
    if done == cycles:
        return "end"
    return "cycle" if done % every == 0 else None


def measure(model: str, cycles: int, warmup: int, every: int) -> tuple[list[Sample], list[float]]:
    with tempfile.TemporaryDirectory(prefix="reload-memory-") as scratch:
        store = demo_store(Path(scratch) / "store")
        if not (store / model).is_dir():
            raise SystemExit(f"models_store has no model {model!r}")
        # POLL_INTERVAL_S=0: only /admin/reload changes what is loaded.
        with (
            our_server(store, extra_env={"ADMIN_TOKEN": TOKEN}) as server,
            httpx.Client(base_url=server.url, timeout=30.0) as client,
        ):
            cycler = Cycler(client, store / model, sample_row(client, model))
            samples = [Sample("start", 0, server.rss_kib())]
            print(f"{'':12} {'cycle':>6} {'VmRSS MiB':>10}", flush=True)
            print(f"{'start':12} {0:6} {samples[0].rss_kib / 1024:10.1f}", flush=True)
            for done in range(1, cycles + 1):
                cycler.cycle()
                label = checkpoint(done, cycles, warmup, every)
                if label is not None:
                    sample = Sample(label, done, server.rss_kib())
                    samples.append(sample)
                    print(f"{label:12} {done:6} {sample.rss_kib / 1024:10.1f}", flush=True)
    return samples, cycler.reload_s


def report(model: str, samples: list[Sample], reload_s: list[float]) -> str:
    start = samples[0]
    warm = next(s for s in samples if s.label == "warm-up")
    end = samples[-1]
    per_100 = (end.rss_kib - warm.rss_kib) / 1024 / (end.cycle - warm.cycle) * 100
    lines = [
        f"# Server memory over reload cycles ({model})",
        "",
        "Each cycle: add a version folder (staged, renamed), POST /admin/reload, one prediction "
        "from it, remove it, POST /admin/reload. One worker, watching off.",
        "",
        "| point | cycle | VmRSS (MiB) | since warm-up (MiB) |",
        "| --- | --- | --- | --- |",
    ]
    for s in samples:
        since = f"{(s.rss_kib - warm.rss_kib) / 1024:+.1f}" if s.cycle >= warm.cycle else ""
        lines.append(f"| {s.label} | {s.cycle} | {s.rss_kib / 1024:.1f} | {since} |")
    lines += [
        "",
        f"- RSS at start: {start.rss_kib / 1024:.1f} MiB; after the {warm.cycle}-cycle warm-up: "
        f"{warm.rss_kib / 1024:.1f} MiB; at the end ({end.cycle} cycles): "
        f"{end.rss_kib / 1024:.1f} MiB",
        f"- growth after warm-up: {per_100:+.2f} MiB per 100 cycles",
        f"- POST /admin/reload: median {statistics.median(reload_s) * 1000:.1f} ms, "
        f"max {max(reload_s) * 1000:.1f} ms over {len(reload_s)} calls",
    ]
    return "\n".join(lines)


@exits_non_zero_on_failure
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--model", default="iris")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument(
        "--max-growth-per-100",
        type=float,
        default=5.0,
        help="MiB of VmRSS per 100 cycles after warm-up above which the run fails",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if not 0 < args.warmup < args.cycles or args.every < 1:
        parser.error("need 0 < --warmup < --cycles and --every >= 1")
    samples, reload_s = measure(args.model, args.cycles, args.warmup, args.every)
    text = report(args.model, samples, reload_s)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reload_memory.md").write_text(text + "\n")
    print("\n" + text)
    warm = next(s for s in samples if s.label == "warm-up")
    per_100 = (samples[-1].rss_kib - warm.rss_kib) / 1024 / (samples[-1].cycle - warm.cycle) * 100
    require(
        per_100 <= args.max_growth_per_100,
        f"VmRSS grew {per_100:+.2f} MiB per 100 cycles, bound {args.max_growth_per_100:g}",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
