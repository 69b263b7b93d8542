"""The two benchmarks that time in process (the README's figures on the class reader and on the
request path's choices) run to their table with short settings, and refuse what they cannot
measure fairly."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from benchmarks import graph_reader, hot_path
from benchmarks.failures import BenchmarkFailed

REPO = Path(__file__).resolve().parents[2]


def test_graph_reader_reads_the_same_classes_both_ways(capsys: pytest.CaptureFixture[str]):
    assert graph_reader.main(["--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "classes ['setosa', 'versicolor', 'virginica']" in out
    assert re.search(r"installed onnx distribution: \d+\.\d MiB", out)
    assert re.search(r"^\| ml\.graph \| [\d.]+ \(", out, re.M)
    assert re.search(r"^\| onnx \| [\d.]+ \(", out, re.M)


def test_graph_reader_refuses_a_model_without_classes(capsys: pytest.CaptureFixture[str]):
    regressor = REPO / "models_store" / "diabetes" / "1" / "model.onnx"
    assert graph_reader.main(["--repeats", "1", "--model", str(regressor)]) == 1
    assert "found no classes" in capsys.readouterr().err


def test_hot_path_prints_every_pair(capsys: pytest.CaptureFixture[str]):
    assert hot_path.main(["--repeats", "20", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    figures = re.compile(r"^\| .+ / .+ \| [\d.]+ \| [\d.]+ \| [+-][\d.]+ \| [\d.]+ \|$")
    rows = [line for line in out.splitlines() if figures.match(line)]
    assert len(rows) == 8, out
    assert re.search(r"gc\.freeze\(\) after importing app\.main: [\d,]+ objects frozen", out)


def test_hot_path_refuses_a_pair_that_answers_differently():
    with pytest.raises(BenchmarkFailed, match="answered differently"):
        hot_path.pair(lambda: np.zeros(3), lambda: np.ones(3), repeats=1, rounds=1)
