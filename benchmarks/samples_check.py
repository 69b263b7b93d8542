"""What checking `samples.json` adds to loading each demo version (never on the request path).

    python -m benchmarks.samples_check [--repeats 20]

Each version of models_store is loaded in this process (onnxruntime session, warm-up, and the
samples check) `--repeats` times with its samples.json and as many times from a copy without it,
interleaved; the difference of the medians is what the check costs. The samples' rows also warm the
version up in place of a made-up row, so the difference holds both.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.failures import exits_non_zero_on_failure, require
from benchmarks.servers import REPO
from ml.config import read_model_config
from ml.model import load_model

STORE = REPO / "models_store"


def versions() -> list[tuple[str, int, Path]]:
    found = []
    for model_dir in sorted(p for p in STORE.iterdir() if p.is_dir()):
        for version_dir in sorted(p for p in model_dir.iterdir() if p.name.isdigit()):
            if (version_dir / "samples.json").is_file():
                found.append((model_dir.name, int(version_dir.name), version_dir))
    return found


def load_ms(name: str, version: int, folder: Path, config: object) -> tuple[float, int]:
    started = time.perf_counter()
    model = load_model(name, version, folder, config)  # type: ignore[arg-type]
    return (time.perf_counter() - started) * 1000, model.samples_checked


@exits_non_zero_on_failure
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    lines = [
        "| version | rows checked | load with samples (ms) | load without (ms) | the check (ms) |",
        "| --- | --- | --- | --- | --- |",
    ]
    totals = [0.0, 0.0]
    with tempfile.TemporaryDirectory() as scratch:
        for name, version, folder in versions():
            bare = Path(scratch) / name / str(version)
            shutil.copytree(folder, bare)
            (bare / "samples.json").unlink()
            config = read_model_config(folder.parent)
            with_samples, without, rows = [], [], 0
            for _ in range(args.repeats):
                ms, rows = load_ms(name, version, folder, config)
                require(rows > 0, f"{name} {version}: no sample row was checked")
                with_samples.append(ms)
                ms, checked = load_ms(name, version, bare, config)
                require(checked == 0, f"{name} {version}: rows checked without samples.json")
                without.append(ms)
            a, b = statistics.median(with_samples), statistics.median(without)
            totals[0] += a
            totals[1] += b
            lines.append(f"| {name} {version} | {rows} | {a:.1f} | {b:.1f} | {a - b:+.1f} |")
    lines.append(f"| all | | {totals[0]:.1f} | {totals[1]:.1f} | {totals[0] - totals[1]:+.1f} |")
    print(f"Medians of {args.repeats} loads each, interleaved, one process.\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
