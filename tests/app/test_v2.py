"""The Open Inference Protocol (KServe V2) routes: health, metadata, inference in JSON and in
binary tensor data, answered as onnxruntime answers, and every error as `{"error": "..."}`."""

from __future__ import annotations

import math
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
import pytest
from onnx_factories import (
    columns_rows,
    write_columns_pipeline,
    write_garbage,
    write_int64_input_model,
    write_iris_classifier,
    write_model_toml,
    write_raw_model,
    write_regressor,
)
from prometheus_client.parser import text_string_to_metric_families

from ml.batching import MicroBatcher

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [6.0, 2.7, 4.2, 1.3]]
PIPELINE_ROWS = [
    {"age": 0.04, "sex": "male", "bmi": 0.06, "bp": 0.02, "s1": -0.04}
    | {"s2": -0.03, "s3": -0.04, "s4": -0.003, "s5": 0.02, "s6": -0.02},
    {"age": -0.002, "sex": "female", "bmi": -0.05, "bp": -0.03, "s1": -0.008}
    | {"s2": -0.02, "s3": 0.07, "s4": -0.04, "s5": -0.07, "s6": -0.09},
]
PIPELINE_COLUMNS = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
HEADER = "Inference-Header-Content-Length"
DEMO_STORE = Path(__file__).resolve().parents[2] / "models_store"


def close(value: object) -> object:
    return pytest.approx(value, rel=1e-5, abs=1e-6)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo store plus models for the edge cases: ZipMap, fixed batch, int64, failures."""
    store = tmp_path_factory.mktemp("v2") / "store"
    shutil.copytree(DEMO_STORE, store)
    write_iris_classifier(store / "iris_zipmap" / "1", zipmap=True)
    write_raw_model(store / "raw_one" / "1", batch=1)
    write_raw_model(store / "raw" / "1")
    write_columns_pipeline(store / "columns" / "1")
    write_int64_input_model(store / "counts" / "1")
    write_regressor(store / "flaky" / "1")
    write_garbage(store / "flaky" / "2")  # FAILED: version 1 serves by default
    write_garbage(store / "dead" / "1")  # no version serves
    write_regressor(store / "batched" / "1")
    write_model_toml(store / "batched", "[batching]\nmax_batch_size = 8\nmax_delay_ms = 1.0\n")
    return store


@pytest.fixture(scope="module")
def v2(serve, store) -> Iterator[Any]:
    with serve(store, max_body_bytes=64 * 1024, max_batch_rows=100) as client:
        yield client


def session(store: Path, model: str, version: int = 1) -> ort.InferenceSession:
    path = store / model / str(version) / "model.onnx"
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def v2_error(response: Any, status: int, *fragments: str) -> str:
    """`response` is the protocol's error body with `status`, and its message holds each
    fragment."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}, body
    message = body["error"]
    assert isinstance(message, str) and message
    assert "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def iris_input(rows: list[list[float]], **fields: Any) -> dict[str, Any]:
    return {"name": "input", "shape": [len(rows), 4], "datatype": "FP32", "data": rows} | fields


def pipeline_inputs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "shape": [len(rows), 1],
            "datatype": "BYTES" if name == "sex" else "FP32",
            "data": [[row[name]] for row in rows],
        }
        for name in PIPELINE_COLUMNS
    ]


def outputs_by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {output["name"]: output for output in body["outputs"]}


def split_binary(response: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The JSON part of a binary answer, and each binary output's bytes by name."""
    size = int(response.headers[HEADER])
    body = orjson.loads(response.content[:size])
    blobs, offset = {}, size
    for output in body["outputs"]:
        length = output.get("parameters", {}).get("binary_data_size")
        if length is not None:
            blobs[output["name"]] = response.content[offset : offset + length]
            offset += length
    assert offset == len(response.content)
    return body, blobs


def binary_request(body: dict[str, Any], tensors: list[bytes]) -> tuple[bytes, dict[str, str]]:
    header = orjson.dumps(body)
    return header + b"".join(tensors), {HEADER: str(len(header))}


def bytes_tensor(values: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


def read_bytes_tensor(blob: bytes) -> list[str]:
    values, offset = [], 0
    while offset < len(blob):
        (length,) = struct.unpack_from("<I", blob, offset)
        values.append(blob[offset + 4 : offset + 4 + length].decode())
        offset += 4 + length
    return values


# -- health and metadata ---------------------------------------------------------------------


def test_live_and_ready(v2):
    live = v2.get("/v2/health/live")
    ready = v2.get("/v2/health/ready")

    assert (live.status_code, live.json()) == (200, {"live": True})
    assert (ready.status_code, ready.json()) == (200, {"ready": True})


def test_empty_store_is_live_but_not_ready(serve, tmp_path):
    store = tmp_path / "store"
    store.mkdir()

    with serve(store, ready=False) as client:
        live = client.get("/v2/health/live")
        ready = client.get("/v2/health/ready")

    assert live.status_code == 200
    v2_error(ready, 400, "no model version is available")


def test_not_ready_while_draining(serve, demo_store):
    with serve(demo_store) as client:
        assert client.get("/v2/health/ready").status_code == 200
    v2_error(client.get("/v2/health/ready"), 400, "shutting down")


def test_server_metadata_lists_binary_tensor_data(v2):
    response = v2.get("/v2")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"name", "version", "extensions"}
    assert body["version"] == v2.app.api.version
    assert "binary_tensor_data" in body["extensions"]


@pytest.mark.parametrize("path", ["/v2/models/iris", "/v2/models/iris/versions/1"])
def test_iris_metadata(v2, path):
    response = v2.get(path)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "name": "iris",
        "versions": ["1", "2"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
        ],
    }


def test_per_column_metadata(v2):
    body = v2.get("/v2/models/columns").json()

    assert body["inputs"] == [
        {"name": "color", "datatype": "BYTES", "shape": [-1, 1]},
        {"name": "size", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "count", "datatype": "INT64", "shape": [-1, 1]},
    ]


def test_fixed_batch_metadata(v2):
    body = v2.get("/v2/models/raw_one").json()

    assert body["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [1, 3]}]
    assert body["outputs"] == [
        {"name": "y", "datatype": "FP32", "shape": [1, 3]},
        {"name": "s", "datatype": "FP32", "shape": [1, 1]},
    ]


def test_zipmap_output_is_left_out_of_metadata(v2):
    body = v2.get("/v2/models/iris_zipmap").json()

    assert body["outputs"] == [{"name": "output_label", "datatype": "BYTES", "shape": [-1]}]


def test_metadata_lists_only_serving_versions(v2):
    body = v2.get("/v2/models/flaky").json()

    assert body["versions"] == ["1"]


@pytest.mark.parametrize(
    "path", ["/v2/models/iris/ready", "/v2/models/iris/versions/1", "/v2/models/flaky/ready"]
)
def test_model_ready(v2, path):
    response = v2.get(path if path.endswith("ready") else path + "/ready")

    assert response.status_code == 200
    assert response.json()["ready"] is True


def test_version_not_serving_is_not_ready(v2):
    v2_error(v2.get("/v2/models/flaky/versions/2/ready"), 400, "failed to load")
    v2_error(v2.get("/v2/models/dead/ready"), 400, "dead")


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/v2/models/nope/ready", "'nope' not found"),
        ("/v2/models/iris/versions/7/ready", "no version 7"),
        ("/v2/models/nope", "'nope' not found"),
        ("/v2/models/iris/versions/7", "no version 7"),
        ("/v2/models/iris/versions/one", "no version 'one'"),
        ("/v2/models/iris/versions/0", "no version '0'"),
        ("/v2/models/nope/versions/x", "'nope' not found"),
        ("/v2/nothing/here", "GET /v2/nothing/here"),
        ("/v2/models", "GET /v2/models"),
    ],
)
def test_unknown_is_404(v2, path, fragment):
    v2_error(v2.get(path), 404, fragment)


def test_metadata_of_a_model_that_does_not_serve_is_503(v2):
    v2_error(v2.get("/v2/models/dead"), 503, "dead")
    v2_error(v2.get("/v2/models/flaky/versions/2"), 503, "failed to load")


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/v2/models/iris/infer"), ("post", "/v2/models/iris"), ("delete", "/v2")],
)
def test_wrong_method_is_405(v2, method, path):
    v2_error(getattr(v2, method)(path), 405, method.upper())


# -- inference in JSON -------------------------------------------------------------------------


@pytest.mark.parametrize("nested", [True, False])
def test_infer_matches_onnxruntime(v2, store, nested):
    data = IRIS_ROWS if nested else [v for row in IRIS_ROWS for v in row]

    response = v2.post(
        "/v2/models/iris/infer", json={"id": "req-1", "inputs": [iris_input(IRIS_ROWS, data=data)]}
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert HEADER.lower() not in response.headers
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("iris", "2", "req-1")
    labels, probabilities = session(store, "iris", 2).run(
        None, {"input": np.array(IRIS_ROWS, dtype=np.float32)}
    )
    assert body["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [3], "data": labels.tolist()},
        {
            "name": "probabilities",
            "datatype": "FP32",
            "shape": [3, 3],
            "data": close(probabilities.ravel().tolist()),
        },
    ]


def test_infer_without_id_has_no_id(v2):
    response = v2.post("/v2/models/iris/infer", json={"inputs": [iris_input(IRIS_ROWS[:1])]})

    assert response.status_code == 200, response.text
    assert "id" not in response.json()


def test_infer_named_version(v2, store):
    response = v2.post("/v2/models/iris/versions/1/infer", json={"inputs": [iris_input(IRIS_ROWS)]})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "1"
    labels, _ = session(store, "iris", 1).run(None, {"input": np.array(IRIS_ROWS, np.float32)})
    assert outputs_by_name(body)["label"]["data"] == labels.tolist()


def test_requested_outputs_only(v2, store):
    response = v2.post(
        "/v2/models/iris/infer",
        json={"inputs": [iris_input(IRIS_ROWS)], "outputs": [{"name": "probabilities"}]},
    )

    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["name"] == "probabilities"
    _, probabilities = session(store, "iris", 2).run(
        None, {"input": np.array(IRIS_ROWS, np.float32)}
    )
    assert output["data"] == close(probabilities.ravel().tolist())


def test_per_column_model_with_a_bytes_input(v2, store):
    response = v2.post(
        "/v2/models/diabetes_pipeline/infer", json={"inputs": pipeline_inputs(PIPELINE_ROWS)}
    )

    assert response.status_code == 200, response.text
    feeds = {
        name: np.array(
            [[row[name]] for row in PIPELINE_ROWS], dtype=object if name == "sex" else np.float32
        )
        for name in PIPELINE_COLUMNS
    }
    (expected,) = session(store, "diabetes_pipeline").run(None, feeds)
    (output,) = response.json()["outputs"]
    assert (output["name"], output["datatype"]) == ("variable", "FP32")
    assert output["shape"] == list(expected.shape)
    assert output["data"] == close(expected.ravel().tolist())


def test_int64_columns_and_inputs_in_any_order(v2, store):
    rows = columns_rows(4)
    inputs = [
        {"name": "count", "shape": [4, 1], "datatype": "INT64", "data": [r["count"] for r in rows]},
        {"name": "size", "shape": [4, 1], "datatype": "FP32", "data": [r["size"] for r in rows]},
        {"name": "color", "shape": [4, 1], "datatype": "BYTES", "data": [r["color"] for r in rows]},
    ]

    response = v2.post("/v2/models/columns/infer", json={"inputs": inputs})

    assert response.status_code == 200, response.text
    feeds = {
        "color": np.array([[r["color"]] for r in rows], dtype=object),
        "size": np.array([[r["size"]] for r in rows], dtype=np.float32),
        "count": np.array([[r["count"]] for r in rows], dtype=np.int64),
    }
    labels, probabilities = session(store, "columns").run(None, feeds)
    outputs = outputs_by_name(response.json())
    assert outputs["label"]["data"] == labels.tolist()
    assert outputs["probabilities"]["data"] == close(probabilities.ravel().tolist())


def test_int64_tensor_model(v2, store):
    response = v2.post(
        "/v2/models/counts/infer",
        json={
            "inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT64", "data": [1, 2, 3, 4]}]
        },
    )

    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output == {"name": "y", "datatype": "FP32", "shape": [2, 1], "data": [3.0, 7.0]}


def test_fixed_batch_model_takes_its_one_row(v2):
    response = v2.post(
        "/v2/models/raw_one/infer",
        json={"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
    )

    assert response.status_code == 200, response.text
    outputs = outputs_by_name(response.json())
    assert outputs["y"]["data"] == [2.0, 4.0, 6.0]
    assert outputs["s"] == {"name": "s", "datatype": "FP32", "shape": [1, 1], "data": [6.0]}


def test_zipmap_output_is_left_out_by_default(v2, store):
    response = v2.post("/v2/models/iris_zipmap/infer", json={"inputs": [iris_input(IRIS_ROWS)]})

    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    labels, _ = session(store, "iris_zipmap").run(None, {"input": np.array(IRIS_ROWS, np.float32)})
    assert output["name"] == "output_label"
    assert output["data"] == labels.tolist()


def test_single_rows_go_through_the_batcher_like_predict(v2, store, monkeypatch):
    row = [0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, -0.002, 0.02, -0.02]
    body = {"inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP32", "data": row}]}
    submitted: list[int] = []
    submit = MicroBatcher.submit

    async def counted(self: MicroBatcher, arrays: Any) -> Any:
        submitted.append(len(next(iter(arrays.values()))))
        return await submit(self, arrays)

    monkeypatch.setattr(MicroBatcher, "submit", counted)

    v2_answer = v2.post("/v2/models/batched/infer", json=body)
    predict_answer = v2.post("/predict", json={"model": "batched", "features": row})

    assert v2_answer.status_code == 200, v2_answer.text
    assert submitted == [1, 1]
    (output,) = v2_answer.json()["outputs"]
    assert output["data"] == close([predict_answer.json()["prediction"]])
    (expected,) = session(store, "batched").run(None, {"input": np.array([row], np.float32)})
    assert output["data"] == close(expected.ravel().tolist())


# -- binary tensor data ------------------------------------------------------------------------


def test_binary_input_and_binary_outputs(v2, store):
    rows = np.array(IRIS_ROWS, dtype=np.float32)
    request = {
        "inputs": [
            {
                "name": "input",
                "shape": [3, 4],
                "datatype": "FP32",
                "parameters": {"binary_data_size": rows.nbytes},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    content, headers = binary_request(request, [rows.tobytes()])

    response = v2.post("/v2/models/iris/infer", content=content, headers=headers)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    body, blobs = split_binary(response)
    labels, probabilities = session(store, "iris", 2).run(None, {"input": rows})
    outputs = outputs_by_name(body)
    assert outputs["label"]["datatype"] == "BYTES"
    assert "data" not in outputs["label"]
    assert read_bytes_tensor(blobs["label"]) == labels.tolist()
    assert outputs["probabilities"]["shape"] == [3, 3]
    got = np.frombuffer(blobs["probabilities"], dtype="<f4").reshape(3, 3)
    np.testing.assert_allclose(got, probabilities, rtol=1e-6)


def test_binary_output_chosen_per_output(v2, store):
    request = {
        "inputs": [iris_input(IRIS_ROWS)],
        "outputs": [
            {"name": "label", "parameters": {"binary_data": False}},
            {"name": "probabilities", "parameters": {"binary_data": True}},
        ],
    }

    response = v2.post("/v2/models/iris/infer", json=request)

    assert response.status_code == 200, response.text
    body, blobs = split_binary(response)
    outputs = outputs_by_name(body)
    labels, probabilities = session(store, "iris", 2).run(
        None, {"input": np.array(IRIS_ROWS, np.float32)}
    )
    assert outputs["label"]["data"] == labels.tolist()
    assert outputs["probabilities"]["parameters"] == {"binary_data_size": 36}
    np.testing.assert_allclose(
        np.frombuffer(blobs["probabilities"], "<f4").reshape(3, 3), probabilities, rtol=1e-6
    )


def test_binary_bytes_input_with_json_inputs(v2, store):
    inputs = pipeline_inputs(PIPELINE_ROWS)
    sex = [row["sex"] for row in PIPELINE_ROWS]
    blob = bytes_tensor(sex)
    for tensor in inputs:
        if tensor["name"] == "sex":
            del tensor["data"]
            tensor["parameters"] = {"binary_data_size": len(blob)}
    content, headers = binary_request({"inputs": inputs}, [blob])

    response = v2.post("/v2/models/diabetes_pipeline/infer", content=content, headers=headers)

    assert response.status_code == 200, response.text
    json_response = v2.post(
        "/v2/models/diabetes_pipeline/infer", json={"inputs": pipeline_inputs(PIPELINE_ROWS)}
    )
    assert response.json() == json_response.json()


# -- refused requests --------------------------------------------------------------------------

BAD_INPUTS = [
    pytest.param(
        "iris",
        [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
        ["unknown input 'features'", "iris takes the inputs input"],
        id="unknown-input",
    ),
    pytest.param(
        "iris",
        [iris_input(IRIS_ROWS[:1]), iris_input(IRIS_ROWS[:1])],
        ["input 'input' is given twice"],
        id="duplicate-input",
    ),
    pytest.param(
        "diabetes_pipeline",
        [t for t in pipeline_inputs(PIPELINE_ROWS) if t["name"] != "sex"],
        ["missing input 'sex'"],
        id="missing-input",
    ),
    pytest.param(
        "iris",
        [iris_input(IRIS_ROWS[:1], datatype="FP64")],
        ["input 'input' takes float32 numbers; got float64"],
        id="wrong-datatype",
    ),
    pytest.param(
        "iris",
        [iris_input(IRIS_ROWS[:1], datatype="FLOAT")],
        ["input 'input' has datatype 'FLOAT'", "FP32"],
        id="unknown-datatype",
    ),
    pytest.param(
        "iris",
        [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}],
        ["input 'input' takes shape [-1, 4]", "got [2, 3]"],
        id="feature-dimension",
    ),
    pytest.param(
        "iris",
        [{"name": "input", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
        ["input 'input' takes shape [-1, 4]", "got [4]"],
        id="one-dimensional",
    ),
    pytest.param(
        "raw_one",
        [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}],
        ["input 'x' takes shape [1, 3]", "got [2, 3]"],
        id="fixed-batch",
    ),
    pytest.param(
        "iris",
        [{"name": "input", "shape": [0, 4], "datatype": "FP32", "data": []}],
        ["input 'input' has no rows"],
        id="empty-batch",
    ),
    pytest.param(
        "diabetes_pipeline",
        [
            t | {"shape": [1, 1], "data": t["data"][:1]} if t["name"] == "age" else t
            for t in pipeline_inputs(PIPELINE_ROWS)
        ],
        ["the inputs disagree on the number of rows", "'age' has 1", "'sex' has 2"],
        id="inconsistent-batch",
    ),
    pytest.param(
        "iris",
        [iris_input(IRIS_ROWS[:1], shape=[2, 4])],
        ["input 'input' has 4 values but its shape [2, 4] holds 8"],
        id="data-length",
    ),
    pytest.param(
        "iris",
        [iris_input([[5.1, "3.5", 1.4, 0.2]])],
        ["input 'input': value 1 must be a number (FP32)", "'3.5'"],
        id="string-for-number",
    ),
    pytest.param(
        "iris",
        [iris_input([[5.1, True, 1.4, 0.2]])],
        ["value 1 must be a number", "True"],
        id="boolean-for-number",
    ),
    pytest.param(
        "iris",
        [iris_input([[5.1, 1e39, 1.4, 0.2]])],
        ["input 'input': values must lie within ±3.40282e+38 (float32)"],
        id="beyond-float32",
    ),
    pytest.param(
        "iris",
        [iris_input([[5.1, [3.5], 1.4, 0.2]])],
        ["input 'input': value 1 must be a number (FP32); got [3.5]"],
        id="too-deep",
    ),
    pytest.param(
        "iris",
        [iris_input(IRIS_ROWS[:1], data=[[5.1, 3.5], 1.4, 0.2])],
        ["input 'input': data mixes lists and values at one level"],
        id="ragged",
    ),
    pytest.param(
        "iris",
        [iris_input(IRIS_ROWS[:1], data=5.1)],
        ["input 'input': data must be a list"],
        id="scalar-data",
    ),
    pytest.param(
        "iris",
        [{"name": "input", "shape": [1, 4], "datatype": "FP32"}],
        ["input 'input' has no data"],
        id="no-data",
    ),
    pytest.param(
        "counts",
        [{"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [1, 2.5]}],
        ["value 1 must be an integer", "2.5"],
        id="float-for-integer",
    ),
    pytest.param(
        "diabetes_pipeline",
        [
            t | {"data": [[1], [2]]} if t["name"] == "sex" else t
            for t in pipeline_inputs(PIPELINE_ROWS)
        ],
        ["input 'sex': value 0 must be a string (BYTES)"],
        id="number-for-bytes",
    ),
    pytest.param(
        "diabetes_pipeline",
        [
            t | {"datatype": "FP32", "data": [[1], [2]]} if t["name"] == "sex" else t
            for t in pipeline_inputs(PIPELINE_ROWS)
        ],
        ["input 'sex' takes strings; got float32 numbers"],
        id="numbers-for-string-input",
    ),
    pytest.param(
        "iris",
        [iris_input(IRIS_ROWS[:1], datatype="BYTES", data=["a", "b", "c", "d"])],
        ["input 'input' takes float32 numbers; got strings"],
        id="strings-for-number-input",
    ),
]


@pytest.mark.parametrize(("model", "inputs", "fragments"), BAD_INPUTS)
def test_input_that_does_not_fit_is_400(v2, model, inputs, fragments):
    response = v2.post(f"/v2/models/{model}/infer", json={"inputs": inputs})

    v2_error(response, 400, *fragments)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("NaN", "model iris does not take missing values"),
        ("null", "model iris does not take missing values"),
        ("Infinity", "values must be finite numbers"),
        ("-Infinity", "values must be finite numbers"),
    ],
)
def test_non_finite_numbers_are_400(v2, value, why):
    content = '{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", '
    content += f'"data": [5.1, 3.5, {value}, 0.2]}}]}}'

    response = v2.post("/v2/models/iris/infer", content=content)

    v2_error(response, 400, "input 'input' holds", "in row 0 (feature 'petal_length')", why)


def test_non_finite_binary_numbers_are_400(v2):
    rows = np.array([[5.1, math.nan, 1.4, 0.2]], dtype=np.float32)
    request = {
        "inputs": [
            {
                "name": "input",
                "shape": [1, 4],
                "datatype": "FP32",
                "parameters": {"binary_data_size": rows.nbytes},
            }
        ]
    }
    content, headers = binary_request(request, [rows.tobytes()])

    response = v2.post("/v2/models/iris/infer", content=content, headers=headers)

    v2_error(
        response,
        400,
        "input 'input' holds nan in row 0 (feature 'sepal_width')",
        "model iris does not take missing values",
    )


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (b"{not json", ["the body is not valid JSON"]),
        (b"", ["the body is not valid JSON"]),
        (b"[1, 2]", ["the body must be a JSON object"]),
        (b'{"inputs": "x"}', ["inputs"]),
        (b'{"inputs": []}', ["inputs", "at least 1"]),
        (b'{"id": "1"}', ["inputs", "Field required"]),
        (b'{"id": 7, "inputs": [{"name": "input"}]}', ["id"]),
        (b'{"inputs": [], "model": "iris"}', ["model", "Extra inputs are not permitted"]),
        (
            b'{"inputs": [{"name": "input", "shape": [-1, 4], "datatype": "FP32", "data": []}]}',
            ["inputs.0.shape.0"],
        ),
        (
            b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3'
            b', 4], "extra": 1}]}',
            ["inputs.0.extra"],
        ),
    ],
)
def test_malformed_body_is_400(v2, content, fragments):
    response = v2.post("/v2/models/iris/infer", content=content)

    v2_error(response, 400, *fragments)


@pytest.mark.parametrize(
    ("outputs", "fragments"),
    [
        ([{"name": "score"}], ["model iris has no output 'score'", "label, probabilities"]),
        ([{"name": "label"}, {"name": "label"}], ["output 'label' is asked for twice"]),
        (
            [{"name": "label", "parameters": {"binary_data": "yes"}}],
            ["parameter 'binary_data' must be bool"],
        ),
        (
            [{"name": "label", "parameters": {"classification": 2}}],
            ["parameter 'classification' is not supported"],
        ),
    ],
)
def test_bad_requested_outputs_are_400(v2, outputs, fragments):
    response = v2.post(
        "/v2/models/iris/infer", json={"inputs": [iris_input(IRIS_ROWS)], "outputs": outputs}
    )

    v2_error(response, 400, *fragments)


def test_requesting_a_zipmap_output_is_400(v2):
    response = v2.post(
        "/v2/models/iris_zipmap/infer",
        json={"inputs": [iris_input(IRIS_ROWS)], "outputs": [{"name": "output_probability"}]},
    )

    v2_error(response, 400, "'output_probability' is a sequence of maps", "output_label")


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        ("/v2/models/nope/infer", 404, "model 'nope' not found"),
        ("/v2/models/iris/versions/7/infer", 404, "no version 7"),
        ("/v2/models/iris/versions/latest/infer", 404, "no version 'latest'"),
        ("/v2/models/flaky/versions/2/infer", 503, "failed to load"),
        ("/v2/models/dead/infer", 503, "no version of model 'dead' is available"),
        ("/v2/models/iris/infer/more", 404, "POST /v2/models/iris/infer/more"),
    ],
)
def test_unknown_or_unready_model_on_infer(v2, path, status, fragment):
    response = v2.post(path, json={"inputs": [iris_input(IRIS_ROWS)]})

    v2_error(response, status, fragment)


def test_body_over_the_limit_is_413(v2):
    content = orjson.dumps({"inputs": [iris_input(IRIS_ROWS)]}) + b" " * (64 * 1024)

    v2_error(v2.post("/v2/models/iris/infer", content=content), 413, str(64 * 1024))


def test_more_rows_than_max_batch_rows_is_400(v2):
    rows = [IRIS_ROWS[0]] * 101

    response = v2.post("/v2/models/iris/infer", json={"inputs": [iris_input(rows)]})

    v2_error(response, 400, "101 rows", "at most 100", "MAX_BATCH_ROWS")


def test_compressed_body_is_415(v2):
    response = v2.post(
        "/v2/models/iris/infer", content=b"\x1f\x8b", headers={"content-encoding": "gzip"}
    )

    v2_error(response, 415, "gzip")


def test_a_compressed_body_past_the_size_limit_is_415_unread(v2):
    # Refused for its encoding before it is read: not read in full only to be refused.
    body = b"\x1f\x8b" + bytes(128 * 1024)  # twice the fixture's MAX_BODY_BYTES
    response = v2.post("/v2/models/iris/infer", content=body, headers={"content-encoding": "gzip"})

    v2_error(response, 415, "gzip")


def _one_binary_iris_row(size: int | None = None) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input",
                "shape": [1, 4],
                "datatype": "FP32",
                "parameters": {"binary_data_size": 16 if size is None else size},
            }
        ]
    }


@pytest.mark.parametrize(
    ("request_body", "tensors", "headers", "fragments"),
    [
        (_one_binary_iris_row(), [], {}, ["no Inference-Header-Content-Length"]),
        (_one_binary_iris_row(), [b"\0" * 16], {}, ["not valid JSON", "needs the Inference-"]),
        (_one_binary_iris_row(12), [b"\0" * 12], None, ["has 12 bytes of binary data", "16"]),
        (_one_binary_iris_row(), [b"\0" * 8], None, ["needs 16 bytes", "only 8"]),
        (_one_binary_iris_row(), [b"\0" * 20], None, ["4 bytes after the JSON belong to no"]),
        (_one_binary_iris_row(-1), [], None, ["must not be negative"]),
        (
            {"inputs": [iris_input(IRIS_ROWS[:1], parameters={"binary_data_size": 16})]},
            [b"\0" * 16],
            None,
            ["has both data and binary_data_size"],
        ),
        (_one_binary_iris_row(), [b"\0" * 16], {HEADER: "abc"}, ["must be a number of bytes"]),
        (_one_binary_iris_row(), [b"\0" * 16], {HEADER: "100000"}, ["the body has"]),
    ],
)
def test_bad_binary_data_is_400(v2, request_body, tensors, headers, fragments):
    content, computed = binary_request(request_body, tensors)

    response = v2.post(
        "/v2/models/iris/infer", content=content, headers=computed if headers is None else headers
    )

    v2_error(response, 400, *fragments)


@pytest.mark.parametrize(
    ("blob", "fragment"),
    [
        (b"\x04\0\0", "ends inside an element's length"),
        (b"\x09\0\0\0male", "runs past its data"),
        (b"\x02\0\0\0\xff\xfe\x04\0\0\0male", "is not UTF-8"),
        (bytes_tensor(["male"]), "has 1 BYTES elements; its shape holds 2"),
    ],
)
def test_bad_binary_bytes_are_400(v2, blob, fragment):
    inputs = pipeline_inputs(PIPELINE_ROWS)
    for tensor in inputs:
        if tensor["name"] == "sex":
            del tensor["data"]
            tensor["parameters"] = {"binary_data_size": len(blob)}
    content, headers = binary_request({"inputs": inputs}, [blob])

    response = v2.post("/v2/models/diabetes_pipeline/infer", content=content, headers=headers)

    v2_error(response, 400, "input 'sex'", fragment)


def test_errors_elsewhere_stay_problem_json(v2, problem):
    problem(v2.get("/nothing/here"), 404)
    problem(v2.post("/predict", json={"model": "iris", "features": [1, 2]}), 422)


# -- the OpenAPI document ----------------------------------------------------------------------


def test_v2_routes_are_documented(v2):
    paths = v2.get("/openapi.json").json()["paths"]

    for path in ("/v2", "/v2/health/ready", "/v2/models/{name}/versions/{version}/ready"):
        assert paths[path]["get"]["description"]
    infer = paths["/v2/models/{name}/versions/{version}/infer"]["post"]
    schema = infer["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {
        "id",
        "model_name",
        "model_version",
        "parameters",
        "inputs",
        "outputs",
    }
    assert "application/octet-stream" in infer["requestBody"]["content"]
    assert "400" in infer["responses"]
    assert [p["name"] for p in infer["parameters"]] == ["name", "version"]
    default = paths["/v2/models/{name}/infer"]["post"]
    assert [p["name"] for p in default["parameters"]] == ["name"]
    assert default["requestBody"] == infer["requestBody"]


# -- what every Open Inference Protocol client sends -------------------------------------------

# The bodies KServe's Python SDK (kserve 0.21: InferenceRESTClient.infer with an InferRequest)
# sends, byte for byte, as its InferRequest.to_rest() writes them: compact JSON with `id` and
# `model_name` first; an input set from numpy with binary data carries only
# `parameters.binary_data_size` and its bytes follow the JSON; the SDK then sends
# `Inference-Header-Content-Length` and `content-type: application/octet-stream`. Written out
# here because the SDK cannot be installed beside this project (it pins protobuf below 7).
KSERVE_JSON = (
    b'{"id":"3f1c9a52-7d1e-4c8e-9b53-2f1b8f0c9a11","model_name":"iris","inputs":[{"name":"input",'
    b'"shape":[2,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2,6.7,3.0,5.2,2.3]}]}'
)
KSERVE_BINARY_JSON = (
    b'{"id":"kserve-binary-1","model_name":"iris","inputs":[{"name":"input","shape":[2,4],'
    b'"datatype":"FP32","parameters":{"binary_data_size":32}}],"outputs":[{"name":'
    b'"probabilities","parameters":{"binary_data":true}}]}'
)
KSERVE_ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
# The string-column model: `sex` from numpy as binary data (length-prefixed UTF-8), the other
# columns as JSON data.
KSERVE_SEX = b"\x04\x00\x00\x00male\x06\x00\x00\x00female"
KSERVE_COLUMNS_JSON = (
    b'{"id":"kserve-columns-1","model_name":"diabetes_pipeline","inputs":['
    b'{"name":"age","shape":[2,1],"datatype":"FP32","data":[0.04,-0.002]},'
    b'{"name":"sex","shape":[2,1],"datatype":"BYTES","parameters":{"binary_data_size":18}},'
    b'{"name":"bmi","shape":[2,1],"datatype":"FP32","data":[0.06,-0.05]},'
    b'{"name":"bp","shape":[2,1],"datatype":"FP32","data":[0.02,-0.03]},'
    b'{"name":"s1","shape":[2,1],"datatype":"FP32","data":[-0.04,-0.008]},'
    b'{"name":"s2","shape":[2,1],"datatype":"FP32","data":[-0.03,-0.02]},'
    b'{"name":"s3","shape":[2,1],"datatype":"FP32","data":[-0.04,0.07]},'
    b'{"name":"s4","shape":[2,1],"datatype":"FP32","data":[-0.003,-0.04]},'
    b'{"name":"s5","shape":[2,1],"datatype":"FP32","data":[0.02,-0.07]},'
    b'{"name":"s6","shape":[2,1],"datatype":"FP32","data":[-0.02,-0.09]}]}'
)


def kserve_binary_headers(json_part: bytes) -> dict[str, str]:
    return {HEADER: str(len(json_part)), "content-type": "application/octet-stream"}


def test_kserve_sdk_json_body(v2, store):
    # The SDK sends no content type with JSON (httpx's raw `content`).
    response = v2.post("/v2/models/iris/infer", content=KSERVE_JSON)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["id"]) == ("iris", "3f1c9a52-7d1e-4c8e-9b53-2f1b8f0c9a11")
    labels, probabilities = session(store, "iris", 2).run(None, {"input": KSERVE_ROWS})
    outputs = outputs_by_name(body)
    assert outputs["label"]["data"] == labels.tolist()
    assert outputs["probabilities"]["data"] == close(probabilities.ravel().tolist())


def test_kserve_sdk_binary_body(v2, store):
    content = KSERVE_BINARY_JSON + KSERVE_ROWS.tobytes()

    response = v2.post(
        "/v2/models/iris/infer", content=content, headers=kserve_binary_headers(KSERVE_BINARY_JSON)
    )

    assert response.status_code == 200, response.text
    body, blobs = split_binary(response)
    assert [output["name"] for output in body["outputs"]] == ["probabilities"]
    _, probabilities = session(store, "iris", 2).run(None, {"input": KSERVE_ROWS})
    got = np.frombuffer(blobs["probabilities"], dtype="<f4").reshape(2, 3)
    np.testing.assert_allclose(got, probabilities, rtol=1e-6)


def test_kserve_sdk_binary_strings_on_a_string_column_model(v2, store):
    content = KSERVE_COLUMNS_JSON + KSERVE_SEX

    response = v2.post(
        "/v2/models/diabetes_pipeline/infer",
        content=content,
        headers=kserve_binary_headers(KSERVE_COLUMNS_JSON),
    )

    assert response.status_code == 200, response.text
    feeds = {
        name: np.array(
            [[row[name]] for row in PIPELINE_ROWS], dtype=object if name == "sex" else np.float32
        )
        for name in PIPELINE_COLUMNS
    }
    (expected,) = session(store, "diabetes_pipeline").run(None, feeds)
    (output,) = response.json()["outputs"]
    assert output["data"] == close(expected.ravel().tolist())


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/v2/models/iris/infer", {"model_name": "iris"}),
        ("/v2/models/iris/infer", {"model_name": "iris", "model_version": ""}),
        ("/v2/models/iris/versions/1/infer", {"model_name": "iris", "model_version": "1"}),
        ("/v2/models/iris/versions/2/infer", {"model_version": "2"}),
    ],
)
def test_model_name_and_version_that_match_the_url_are_accepted(v2, store, path, fields):
    response = v2.post(path, json=fields | {"inputs": [iris_input(IRIS_ROWS)]})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "iris"
    assert body["model_version"] == (path.split("/")[5] if "versions" in path else "2")


@pytest.mark.parametrize(
    ("path", "fields", "fragments"),
    [
        ("/v2/models/iris/infer", {"model_name": "wine"}, ["model_name", "'wine'", "'iris'"]),
        (
            "/v2/models/iris/versions/2/infer",
            {"model_name": "diabetes", "model_version": "2"},
            ["model_name", "'diabetes'"],
        ),
        ("/v2/models/iris/infer", {"model_version": "1"}, ["model_version", "'1'", "default"]),
        ("/v2/models/iris/versions/2/infer", {"model_version": "1"}, ["model_version", "'2'"]),
        ("/v2/models/iris/infer", {"model_name": 7}, ["model_name"]),
    ],
)
def test_model_name_or_version_that_disagree_with_the_url_are_400(v2, path, fields, fragments):
    response = v2.post(path, json=fields | {"inputs": [iris_input(IRIS_ROWS)]})

    v2_error(response, 400, *fragments)


def test_kserve_binary_body_for_another_model_is_400(v2):
    content = KSERVE_BINARY_JSON + KSERVE_ROWS.tobytes()

    response = v2.post(
        "/v2/models/diabetes/infer",
        content=content,
        headers=kserve_binary_headers(KSERVE_BINARY_JSON),
    )

    v2_error(response, 400, "model_name", "'iris'", "'diabetes'")


# -- the edge answers inference ------------------------------------------------------------------


def requests_by_route(client: Any) -> dict[tuple[str, str, str], float]:
    text = client.app.runtime.metrics.exposition()[0].decode()
    return {
        (s.labels["route"], s.labels["model"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "model_server_requests_total"
    }


def test_infer_is_answered_by_the_edge_and_counted_by_its_route(serve, store, monkeypatch):
    # FastAPI's app never sees an infer request: the edge answers it.
    with serve(store) as client:
        api = client.app.api

        async def refuse(scope: Any, receive: Any, send: Any) -> None:
            raise AssertionError(f"FastAPI was asked for {scope['path']}")

        monkeypatch.setattr(client.app, "api", refuse)
        body = {"inputs": [iris_input(IRIS_ROWS)]}
        default = client.post("/v2/models/iris/infer", json=body, headers={"x-request-id": "v2-1"})
        named = client.post("/v2/models/iris/versions/1/infer", json=body)
        unknown = client.post("/v2/models/nope/infer", json=body)
        monkeypatch.setattr(client.app, "api", api)

        assert default.status_code == 200 and default.headers["x-request-id"] == "v2-1"
        assert named.json()["model_version"] == "1"
        v2_error(unknown, 404, "'nope'")
        counts = requests_by_route(client)
    assert counts[("/v2/models/{name}/infer", "iris", "200")] == 1
    assert counts[("/v2/models/{name}/versions/{version}/infer", "iris", "200")] == 1
    assert counts[("/v2/models/{name}/infer", "", "404")] == 1


def test_infer_answers_405_with_allow_to_other_methods(v2):
    response = v2.put("/v2/models/iris/versions/2/infer", json={})

    v2_error(response, 405, "PUT /v2/models/iris/versions/2/infer")
    assert response.headers["allow"] == "POST"
