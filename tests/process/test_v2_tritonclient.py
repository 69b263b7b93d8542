"""Triton's own HTTP client, unchanged and with its defaults, against `python -m app`.

tritonclient sends input tensors and asks for outputs as binary data unless told otherwise, so
these tests exercise the binary tensor data extension end to end over a real socket.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from live_server import DEMO_STORE, copy_demo_store, start_server
from tritonclient.utils import InferenceServerException

IRIS_ROWS = np.array(
    [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [6.0, 2.7, 4.2, 1.3]], dtype=np.float32
)
PIPELINE_COLUMNS = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
PIPELINE_ROWS = [
    [0.04, "male", 0.06, 0.02, -0.04, -0.03, -0.04, -0.003, 0.02, -0.02],
    [-0.002, "female", -0.05, -0.03, -0.008, -0.02, 0.07, -0.04, -0.07, -0.09],
]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`host:port` of a real server over a copy of the demo store, ready; stopped afterwards."""
    folder = tmp_path_factory.mktemp("v2-triton")
    store = copy_demo_store(folder / "store")
    with start_server(store, folder, ready_path="/v2/health/ready") as server:
        yield f"127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=url)
    try:
        yield client
    finally:
        client.close()


def reference(model: str, feeds: dict[str, np.ndarray], version: int = 1) -> list[np.ndarray]:
    path = DEMO_STORE / model / str(version) / "model.onnx"
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def iris_input(binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("input", list(IRIS_ROWS.shape), "FP32")
    tensor.set_data_from_numpy(IRIS_ROWS, binary_data=binary)
    return tensor


def test_health_and_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata("iris")
    assert metadata["versions"] == ["1", "2"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert client.get_model_metadata("iris", "1")["name"] == "iris"


def test_model_readiness(client):
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", "1")
    assert not client.is_model_ready("iris", "7")
    assert not client.is_model_ready("nope")


def test_binary_inputs_and_outputs(client):
    outputs = [triton.InferRequestedOutput("label"), triton.InferRequestedOutput("probabilities")]

    result = client.infer("iris", [iris_input(binary=True)], outputs=outputs, request_id="7")

    labels, probabilities = reference("iris", {"input": IRIS_ROWS}, version=2)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == ("iris", "2", "7")
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    assert [v.decode() for v in result.as_numpy("label")] == labels.tolist()
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=1e-6)


def test_default_outputs_come_back_binary(client):
    result = client.infer("iris", [iris_input(binary=True)], model_version="1")

    labels, probabilities = reference("iris", {"input": IRIS_ROWS}, version=1)
    assert result.get_response()["model_version"] == "1"
    assert [v.decode() for v in result.as_numpy("label")] == labels.tolist()
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=1e-6)


def test_json_inputs_and_outputs(client):
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=False)]

    result = client.infer("iris", [iris_input(binary=False)], outputs=outputs)

    (output,) = result.get_response()["outputs"]
    assert "data" in output
    _, probabilities = reference("iris", {"input": IRIS_ROWS}, version=2)
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=1e-6)


@pytest.mark.parametrize("binary", [True, False])
def test_per_column_model_with_a_bytes_input(client, binary):
    feeds = {}
    inputs = []
    for j, name in enumerate(PIPELINE_COLUMNS):
        if name == "sex":
            column = np.array([[row[j]] for row in PIPELINE_ROWS], dtype=object)
            tensor = triton.InferInput(name, list(column.shape), "BYTES")
            tensor.set_data_from_numpy(
                np.array([[v.encode() for v in c] for c in column], dtype=object),
                binary_data=binary,
            )
        else:
            column = np.array([[row[j]] for row in PIPELINE_ROWS], dtype=np.float32)
            tensor = triton.InferInput(name, list(column.shape), "FP32")
            tensor.set_data_from_numpy(column, binary_data=binary)
        feeds[name] = column
        inputs.append(tensor)

    result = client.infer("diabetes_pipeline", inputs)

    (expected,) = reference("diabetes_pipeline", feeds)
    np.testing.assert_allclose(result.as_numpy("variable"), expected, rtol=1e-5)


def test_unknown_model_raises_with_the_message(client):
    with pytest.raises(InferenceServerException) as caught:
        client.infer("nope", [iris_input(binary=True)])

    assert caught.value.status() == "404"
    assert "model 'nope' not found" in caught.value.message()


def test_input_that_does_not_fit_raises_with_the_message(client):
    tensor = triton.InferInput("input", [3, 2], "FP32")
    tensor.set_data_from_numpy(IRIS_ROWS[:, :2].copy())

    with pytest.raises(InferenceServerException) as caught:
        client.infer("iris", [tensor])

    assert caught.value.status() == "400"
    assert "input 'input' takes shape [-1, 4]" in caught.value.message()
