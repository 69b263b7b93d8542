"""What exporting buys: per-call latency of each library's own predict_proba (predict for a
regressor) against onnxruntime in process, on the model the export tool wrote, at 1 and 64 rows.

    python -m benchmarks.export_latency [--repeats 200]

One run, all engines side by side on the same rows, median of `repeats` calls each; read the
ratios, not the absolute figures, on a shared machine. onnxruntime runs with one intra-op thread,
as the server runs it; the libraries run with their defaults. Needs the `boosting` extra.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import onnxruntime as ort
import xgboost
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier

from benchmarks.failures import exits_non_zero_on_failure, require
from ml.export import export_model

ROW_COUNTS = (1, 64)


def families() -> list[tuple[str, Any, np.ndarray, np.ndarray]]:
    """(family, unfitted model, x, y): breast cancer for classifiers, diabetes for regressors."""
    x, y = load_breast_cancer(return_X_y=True)
    x = x.astype(np.float32).astype(np.float64)
    d, target = load_diabetes(return_X_y=True, scaled=False)
    d = d.astype(np.float32).astype(np.float64)
    return [
        ("LogisticRegression", LogisticRegression(max_iter=5000), x, y),
        ("RandomForestClassifier (100 trees)", RandomForestClassifier(100, max_depth=8), x, y),
        ("KNeighborsClassifier", KNeighborsClassifier(5), x, y),
        ("MLPClassifier", MLPClassifier((32,), max_iter=1000, random_state=0), x, y),
        ("HistGradientBoostingClassifier", HistGradientBoostingClassifier(max_iter=100), x, y),
        ("HistGradientBoostingRegressor", HistGradientBoostingRegressor(max_iter=100), d, target),
        ("XGBClassifier (100 trees)", xgboost.XGBClassifier(n_estimators=100, max_depth=4), x, y),
        ("LGBMClassifier (100 trees)", lightgbm.LGBMClassifier(n_estimators=100, verbose=-1), x, y),
    ]


def median_us(call: Callable[[], object], repeats: int) -> float:
    call()  # warm-up: first calls allocate
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1e6


def session(folder: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        str(folder / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
    )


def measure(repeats: int) -> list[tuple[str, int, float, float]]:
    results = []
    with tempfile.TemporaryDirectory() as store:
        for family, model, x, y in families():
            model.fit(x, y)
            name = f"m{len(results)}"
            sess = session(export_model(model, Path(store), name, x, atol=1e-3))
            own = model.predict_proba if hasattr(model, "predict_proba") else model.predict
            for rows in ROW_COUNTS:
                batch = x[:rows]
                feed = {"input": batch.astype(np.float32)}
                answered = sess.run(None, feed)[-1]  # probabilities, or the regressor's values
                require(
                    np.allclose(np.ravel(answered), np.ravel(own(batch)), rtol=1e-4, atol=1e-3),
                    f"{family}: onnxruntime answers other than the library on {rows} rows",
                )
                library = median_us(lambda own=own, batch=batch: own(batch), repeats)
                onnx = median_us(lambda sess=sess, feed=feed: sess.run(None, feed), repeats)
                results.append((family, rows, library, onnx))
    return results


def table(results: list[tuple[str, int, float, float]]) -> str:
    lines = [
        "| model | rows | library µs | onnxruntime µs | library / onnxruntime |",
        "| --- | --- | --- | --- | --- |",
    ]
    for family, rows, library, onnx in results:
        ratio = library / onnx
        shown = f"{ratio:,.0f}" if ratio >= 10 else f"{ratio:.2f}"
        lines.append(f"| {family} | {rows} | {library:,.0f} | {onnx:,.1f} | {shown} |")
    return "\n".join(lines)


@exits_non_zero_on_failure
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.export_latency")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per cell")
    args = parser.parse_args(argv)
    print(table(measure(args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
