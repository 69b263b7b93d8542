"""Every request the load test builds is valid: sent once to a real server, each answers 200."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from live_server import LiveServer
from loadtest_store import DEMO_MODELS, OTHER_MODELS

from loadtest.categories import string_categories
from loadtest.cli import Target, parser, streams_for, targets
from loadtest.payloads import Route, Stream, model_stream
from loadtest.rows import describe, generate_rows

PLAN_VALUES = ("basic", "gold", "platinum")


def write_strict_categories_model(folder: Path) -> Path:
    """Ridge on a one-hot "plan" (OneHotEncoder(handle_unknown="error"): onnxruntime fails on
    any other string) and a float "tenure"; one [N, 1] input per column."""
    import numpy as np
    import pandas as pd
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "plan": rng.choice(list(PLAN_VALUES), 40).astype(object),
            "tenure": rng.normal(5.0, 2.0, 40).astype(np.float32),
        }
    )
    target = 3.0 * (frame["plan"] == "gold") + frame["tenure"]
    columns = ColumnTransformer(
        [
            ("plan", OneHotEncoder(handle_unknown="error"), ["plan"]),
            ("t", "passthrough", ["tenure"]),
        ]
    )
    pipeline = Pipeline([("columns", columns), ("model", Ridge())]).fit(frame, target)
    types = [("plan", StringTensorType([None, 1])), ("tenure", FloatTensorType([None, 1]))]
    graph = to_onnx(pipeline, initial_types=types, target_opset={"": 18, "ai.onnx.ml": 3})
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(graph.SerializeToString())
    (folder / "metadata.json").write_text('{"task": "regression", "features": ["plan", "tenure"]}')
    return folder


def send_all(server: LiveServer, stream: Stream) -> list[tuple[int, str]]:
    """Every body of `stream`, sent once; the status and answer of each that is not 200."""
    refused = []
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        for index in range(len(stream.bodies)):
            body, headers = stream.request(index)
            response = client.request(stream.method, stream.path, content=body, headers=headers)
            if response.status_code != 200:
                refused.append((response.status_code, response.text))
    return refused


def tool_streams(server: LiveServer, *options: str) -> tuple[list[Target], list[Stream]]:
    """The targets and streams `model-loadtest --url <server> <options>` would send."""
    args = parser().parse_args(["--url", server.url, *options])
    with httpx.Client(base_url=server.url) as client:
        found = targets(client, args)
    return found, streams_for(found, args)


@pytest.mark.parametrize("route", list(Route))
@pytest.mark.parametrize("model", DEMO_MODELS + OTHER_MODELS)
def test_every_generated_request_answers_200(
    served: LiveServer, store: Path, model: str, route: Route
):
    options = ["--model", model, "--store", str(store), "--route", route, "--batch-rows", "8"]
    _, [stream] = tool_streams(served, *options)
    assert len(stream.bodies) == 32
    assert send_all(served, stream) == []


def test_string_values_come_from_the_graph_when_the_store_is_at_hand(
    served: LiveServer, store: Path, tmp_path: Path
):
    # The demo version ships samples.json, whose rows would be used: a copy without it.
    local = tmp_path / "store"
    shutil.copytree(
        store / "diabetes_pipeline",
        local / "diabetes_pipeline",
        ignore=shutil.ignore_patterns("samples.json"),
    )
    [target], _ = tool_streams(served, "--model", "diabetes_pipeline", "--store", str(local))
    assert {row["sex"] for row in target.rows} == {"female", "male"}
    assert target.source.endswith(f"string values from {local}/diabetes_pipeline/1/model.onnx")
    [target], _ = tool_streams(served, "--model", "diabetes_pipeline", "--store", str(store))
    assert target.source.endswith(f"{store}/diabetes_pipeline/1/samples.json")
    [target], _ = tool_streams(served, "--model", "diabetes_pipeline")
    assert "string columns sex drawn from ['a', 'b', 'c']" in target.source


def test_string_values_are_read_from_the_encoders_downstream_of_each_input(tmp_path: Path):
    """A OneHotEncoder fitted with handle_unknown="error" fails on any other string, so these
    are the only values a generated row may hold."""
    folder = write_strict_categories_model(tmp_path / "plan-price" / "1")
    found = string_categories(folder / "model.onnx", ["plan", "tenure"])
    assert found == {"plan": PLAN_VALUES}


def test_string_columns_get_strings_and_numbers_get_their_json_types(served: LiveServer):
    with httpx.Client(base_url=served.url) as client:
        inputs = describe(client, "churn-risk")
    kinds = {f.name: f.type for f in inputs.features}
    assert kinds == {"color": "string", "size": "number", "count": "integer"}
    for row in generate_rows(inputs, 20):
        assert isinstance(row, dict)
        assert isinstance(row["color"], str)
        assert type(row["size"]) is float
        assert type(row["count"]) is int


def test_a_version_that_takes_other_inputs_gets_rows_of_its_own(served: LiveServer):
    """GET /models describes the default version (2, with a string column); version 1 takes one
    float tensor, which its V2 metadata describes: rows for it are lists of three numbers."""
    with httpx.Client(base_url=served.url) as client:
        default = describe(client, "shifting")
        older = describe(client, "shifting", 1)
    assert default.version == 2
    assert default.named
    assert not older.named
    assert [f.type for f in older.features] == ["number"] * 3
    for inputs in (default, older):
        rows = generate_rows(inputs, 16)
        for route in Route:
            stream = model_stream(inputs, rows, route, batch_rows=4, pin_version=True, bodies=4)
            assert send_all(served, stream) == [], (inputs.version, route)


def test_batches_to_a_fixed_batch_dimension_are_split_for_v2(served: LiveServer):
    with httpx.Client(base_url=served.url) as client:
        inputs = describe(client, "one-at-a-time")
    stream = model_stream(inputs, generate_rows(inputs, 8), Route.V2, 8, True, bodies=3)
    body, _ = stream.request(0)
    assert b'"shape": [1, 3]' in body
    assert send_all(served, stream) == []
