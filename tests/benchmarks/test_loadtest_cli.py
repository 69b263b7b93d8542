"""`model-loadtest` end to end against a real server: the report, the charts, the exit status."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from live_server import LiveServer
from matplotlib import image

from loadtest.cli import main

CHARTS = ("throughput.png", "latency.png", "timeline.png")
IRIS_SAMPLES = {
    "instances": [
        [5.1, 3.5, 1.4, 0.2],
        {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3},
        [5.9, 3.0, 4.2, 1.5],
    ],
    "expected": {"predictions": ["setosa", "virginica", "versicolor"]},
}


def samples_store(root: Path) -> Path:
    """A store holding only iris 2's samples.json: where the data scientist keeps it."""
    folder = root / "iris" / "2"
    folder.mkdir(parents=True)
    (folder / "samples.json").write_text(json.dumps(IRIS_SAMPLES))
    return root


def only_folder(out: Path) -> Path:
    [folder] = out.iterdir()
    return folder


def test_a_comparison_writes_report_csv_and_charts_and_passes_its_budgets(
    served: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "results"
    store = samples_store(tmp_path / "store")
    status = main(
        [
            "--url", served.url, "--store", str(store), "--model", "iris", "--version", "2",
            "--compare", "1", "--users", "1,2", "--seconds", "1", "--processes", "1",
            # Two versions of one small model on one server: a gate a release manager would set,
            # wide enough for a busy machine, narrow enough that a ratio taken from the wrong
            # series (the generator's ceiling, another unit) breaks it.
            "--max-p99-ratio", "4", "--min-throughput-ratio", "0.25", "--out", str(out),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "Every budget holds." in printed
    folder = only_folder(out)
    with (folder / "steps.csv").open() as f:
        steps = list(csv.DictReader(f))
    # Both versions at every level, the order alternating, then the generator's ceiling (8 users
    # at least).
    assert [(s["level"], s["version"]) for s in steps[:4]] == [
        ("1", "iris v2"), ("1", "iris v1"), ("2", "iris v1"), ("2", "iris v2"),
    ]  # fmt: skip
    assert steps[4]["version"] == "generator ceiling (iris v2 requests)"
    assert steps[4]["users"] == "8"
    assert len(steps) == 5
    for step in steps:
        assert int(step["requests"]) > 0
        assert int(step["ok"]) == int(step["requests"])
    report = (folder / "report.md").read_text()
    assert "## iris v2 / iris v1" in report
    # The ratios the gate judged, recomputed from the CSV: candidate over compared version,
    # level by level, median over the levels.
    by = {(s["level"], s["version"]): s for s in steps}
    expected = {
        figure: statistics.median(
            float(by[(level, "iris v2")][column]) / float(by[(level, "iris v1")][column])
            for level in ("1", "2")
        )
        for figure, column in (("throughput", "throughput"), ("p50", "p50_ms"), ("p99", "p99_ms"))
    }
    [median_row] = [line for line in report.splitlines() if line.startswith("| median |")]
    shown = [float(cell.strip(" *x")) for cell in median_row.split("|")[2:5]]
    assert shown == pytest.approx(
        [expected["throughput"], expected["p50"], expected["p99"]], abs=0.011, rel=0.01
    )
    assert "Generator ceiling:" in report
    # Both versions were sent the rows of the candidate's samples.json.
    assert report.count(f"3 rows of {store / 'iris' / '2' / 'samples.json'}") == 2
    for chart in CHARTS:
        assert f"![{chart}]({chart})" in report
        pixels = image.imread(folder / chart)
        assert pixels.shape[0] >= 400 and pixels.shape[1] >= 800


def test_a_broken_budget_exits_1_and_is_named(
    served: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    budgets = tmp_path / "budgets.toml"
    budgets.write_text("[budgets]\nmax_p99_ms = 0.001\nmin_throughput = 1\n")
    status = main(
        [
            "--url", served.url, "--model", "churn-risk", "--route", "v2-binary",
            "--users", "1,2,4", "--seconds", "1", "--budgets", str(budgets),
            "--out", str(tmp_path / "results"),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert status == 1
    assert "passed its budget of 0.001 ms at 1 users" in printed  # the sweep stopped there
    assert "- max_p99_ms: p99 was" in printed
    assert "- min_throughput: the best within the latency budgets was 0 req/s" in printed
    report = (only_folder(tmp_path / "results") / "report.md").read_text()
    assert "- BROKEN max_p99_ms" in report


def test_samples_that_do_not_fit_the_model_stop_the_run_before_any_load(
    served: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    samples = tmp_path / "samples.json"
    samples.write_text(json.dumps({"instances": [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]]}))
    status = main(
        ["--url", served.url, "--model", "iris", "--samples", str(samples), "--seconds", "1",
         "--out", str(tmp_path / "results")]
    )  # fmt: skip
    assert status == 2
    assert "row 1 has 2 values; iris v2 takes 4" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_without_the_bench_extra_the_command_says_which_extra_to_install():
    """A server-only install (the image's) has the command but not matplotlib or Locust."""
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from loadtest.__main__ import main\n"
        "raise SystemExit(main(['--model', 'iris']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "model-loadtest needs the bench extra (matplotlib is not installed)" in done.stderr
    assert "pip install 'onnx-model-server[bench]'" in done.stderr
