"""Rows from samples.json and from feature types, checked against what a version takes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.rows import (
    Feature,
    ModelInputs,
    RowError,
    TensorInput,
    check_rows,
    find_samples,
    generate_rows,
    read_samples,
)

COLUMNS = ModelInputs(
    "churn",
    4,
    (Feature("plan", "string"), Feature("months", "integer"), Feature("spend", "number")),
    (TensorInput("plan", "BYTES", (-1, 1)), TensorInput("months", "INT64", (-1, 1)),
     TensorInput("spend", "FP32", (-1, 1))),
)  # fmt: skip
UNNAMED = ModelInputs(
    "sums", 1, (Feature("x[0]", "number"), Feature("x[1]", "number")),
    (TensorInput("x", "FP64", (-1, 2)),), named=False,
)  # fmt: skip


def test_samples_are_the_instances_of_samples_json(tmp_path: Path):
    path = tmp_path / "churn" / "4" / "samples.json"
    path.parent.mkdir(parents=True)
    rows = [["gold", 3, 10.5], {"plan": "basic", "months": 1, "spend": 0.0}]
    path.write_text(json.dumps({"instances": rows, "expected": {"predictions": [1, 0]}}))
    assert find_samples(tmp_path, "churn", 4) == path
    assert find_samples(tmp_path, "churn", 3) is None
    assert read_samples(path) == rows
    check_rows(COLUMNS, rows, "samples.json")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a samples.json"),
        ('{"expected": {}}', "not a samples.json with an 'instances' list"),
        ('{"instances": []}', "'instances' must be a non-empty list"),
    ],
)
def test_a_broken_samples_file_is_named(tmp_path: Path, content: str, message: str):
    path = tmp_path / "samples.json"
    path.write_text(content)
    with pytest.raises(RowError, match=message):
        read_samples(path)


@pytest.mark.parametrize(
    ("inputs", "row", "message"),
    [
        (COLUMNS, ["gold", 3], "row 0 has 2 values; churn v4 takes 3"),
        (COLUMNS, {"plan": "gold", "month": 3, "spend": 1.0}, "row 0 has the keys"),
        (COLUMNS, "gold,3,1.0", "row 0 is neither a list nor an object"),
        (UNNAMED, {"a": 1.0, "b": 2.0}, "row 0 is keyed by name; this version takes lists"),
    ],
)
def test_rows_that_do_not_fit_the_version_are_refused_by_index(inputs, row, message):
    with pytest.raises(RowError, match=message):
        check_rows(inputs, [row], "samples.json")


def test_generated_rows_follow_the_types_and_the_seed():
    rows = generate_rows(COLUMNS, 50, seed=3)
    assert rows == generate_rows(COLUMNS, 50, seed=3)
    assert rows != generate_rows(COLUMNS, 50, seed=4)
    for row in rows:
        assert isinstance(row, dict)
        assert list(row) == ["plan", "months", "spend"]
        assert type(row["plan"]) is str and type(row["months"]) is int
        assert type(row["spend"]) is float
    lists = generate_rows(UNNAMED, 5)
    assert all(isinstance(row, list) and len(row) == 2 for row in lists)
