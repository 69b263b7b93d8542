"""What reading a classifier's classes costs with the server's own reader and with the onnx package.

    python -m benchmarks.graph_reader [--repeats 5] [--model models_store/iris/2/model.onnx]

The server reads classes from the model file with protobuf and a schema of the few fields it
needs (`ml/graph.py`) instead of depending on the `onnx` package. Each repeat starts two fresh
interpreters, in alternating order, that first import what the server has imported anyway
(numpy, onnxruntime), then time importing the reader (`ml.graph`) or `onnx`, then reading the
classes (`read_classes`, or `onnx.load` and the classifier node's `classlabels_*`), and report the
growth of their peak RSS over the read. Both must find the same classes. Also prints the size of
the installed `onnx` distribution (the `dev` and `export` extras install it; the server does not).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.failures import BenchmarkFailed, exits_non_zero_on_failure, require
from benchmarks.options import alternating
from benchmarks.servers import REPO

MODEL = REPO / "models_store" / "iris" / "2" / "model.onnx"

# Run in a fresh interpreter; argv: the variant ("reader" or "onnx"), the model path.
PROBE = """
import json, resource, sys, time
from pathlib import Path
import numpy, onnxruntime

variant, path = sys.argv[1], sys.argv[2]
started = time.perf_counter()
if variant == "reader":
    from ml.graph import read_classes
else:
    import onnx
imported = time.perf_counter()
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if variant == "reader":
    classes = read_classes(Path(path), "label", None)
else:
    model = onnx.load(path)
    classes = None
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name == "classlabels_strings":
                classes = [value.decode() for value in attribute.strings]
            elif attribute.name == "classlabels_int64s":
                classes = list(attribute.ints)
read = time.perf_counter()
rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({
    "import_ms": (imported - started) * 1000,
    "read_ms": (read - imported) * 1000,
    "rss_growth_kib": rss_after - rss_before,
    "classes": list(classes) if classes is not None else None,
}))
"""


def probe(variant: str, model: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, variant, str(model)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    require(done.returncode == 0, f"the {variant} probe failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


def installed_mib(distribution: str) -> float:
    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError as exc:
        raise BenchmarkFailed(f"{distribution} is not installed (pip install -e '.[dev]')") from exc
    total = 0
    for file in files:
        located = Path(str(file.locate()))
        if located.is_file():
            total += located.stat().st_size
    return total / 2**20


@exits_non_zero_on_failure
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh interpreters per variant")
    parser.add_argument("--model", type=Path, default=MODEL, help="a classifier's model.onnx")
    args = parser.parse_args(argv)
    require(args.model.is_file(), f"no model at {args.model}")
    runs: dict[str, list[dict[str, Any]]] = {"reader": [], "onnx": []}
    for repeat in range(args.repeats):
        for variant in alternating(("reader", "onnx"), repeat):
            runs[variant].append(probe(variant, args.model))
    reader_classes = runs["reader"][0]["classes"]
    require(reader_classes is not None, f"the reader found no classes in {args.model}")
    for variant, results in runs.items():
        for result in results:
            require(
                result["classes"] == reader_classes,
                f"{variant} read classes {result['classes']}, the reader {reader_classes}",
            )
    print(f"{args.model}: classes {reader_classes}; medians of {args.repeats} fresh interpreters")
    print(f"installed onnx distribution: {installed_mib('onnx'):.1f} MiB\n")
    print("| reader | import ms (min-max) | read ms | peak RSS growth over the read KiB |")
    print("| --- | --- | --- | --- |")
    for variant, results in runs.items():
        imports = [r["import_ms"] for r in results]
        print(
            f"| {'ml.graph' if variant == 'reader' else 'onnx'} "
            f"| {statistics.median(imports):.1f} ({min(imports):.1f}-{max(imports):.1f}) "
            f"| {statistics.median(r['read_ms'] for r in results):.2f} "
            f"| {statistics.median(r['rss_growth_kib'] for r in results):.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
