"""The store the load-test tests serve: the demo models, and models of other names, input types
and string columns built by tests/onnx_factories.py."""

from __future__ import annotations

from pathlib import Path

from live_server import DEMO_STORE, copy_demo_store
from onnx_factories import (
    write_columns_pipeline,
    write_double_input_model,
    write_int64_input_model,
    write_iris_classifier,
    write_model_toml,
    write_raw_model,
    write_regressor,
)

# Every model of the demo store, with its samples.json files where it has them.
DEMO_MODELS = tuple(
    sorted(p.name for p in DEMO_STORE.iterdir() if p.is_dir() and p.name[0] not in "._")
)
# Not the demo's names, encodings or inputs: a string column among numbers, int64 and double
# tensors, features the server can only name from the graph, a fixed batch dimension.
OTHER_MODELS = (
    "churn-risk",  # one [N, 1] input per column: a string, a float, an int64
    "basket_value",  # the same columns, a regressor
    "flower-v",  # a classifier without metadata.json: its features named by the graph
    "sums64",  # int64 [N, 2]
    "sumsf64",  # double [N, 2]
    "echo",  # neither classifier nor regressor
    "one-at-a-time",  # batch dimension fixed at 1
    "legacy_reg",  # a regressor without metadata.json
)


def build_store(root: Path) -> Path:
    store = copy_demo_store(root)
    write_columns_pipeline(store / "churn-risk" / "1")
    write_columns_pipeline(store / "basket_value" / "1", task="regression")
    write_iris_classifier(store / "flower-v" / "1", metadata=False)
    write_int64_input_model(store / "sums64" / "1")
    write_double_input_model(store / "sumsf64" / "1")
    write_raw_model(store / "echo" / "1")
    write_raw_model(store / "one-at-a-time" / "1", batch=1)
    write_regressor(store / "legacy_reg" / "1", metadata=False)
    # Two versions with other inputs: 1 takes three floats, 2 the columns with a string.
    write_raw_model(store / "shifting" / "1")
    write_columns_pipeline(store / "shifting" / "2")
    write_model_toml(store / "shifting", 'version_policy = "all"\n')
    return store
