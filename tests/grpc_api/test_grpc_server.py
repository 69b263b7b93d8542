"""The gRPC Open Inference Protocol through a real server process (`python -m app`), called with
tritonclient.grpc unchanged and with its defaults (raw tensors), with a plain grpc channel for
what that client cannot send (typed contents, malformed messages), and with the standard health
and reflection clients.

The store holds the demo models plus users' models the demo does not have: a per-column
pipeline with a string column under other names, a float16 model, a ZipMap classifier, a failed
version, and a model in a rollout.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live_server import DEMO_STORE, LiveServer, copy_demo_store, start_server
from onnx_factories import (
    COLUMNS_LABELS,
    write_columns_pipeline,
    write_garbage,
    write_half_model,
    write_iris_classifier,
    write_model_toml,
)
from tritonclient.utils import InferenceServerException

from app.grpc.proto import grpc_predict_v2_pb2 as pb
from app.grpc.proto import grpc_predict_v2_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow  # real server processes

IRIS_ROWS = np.array(
    [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [6.0, 2.7, 4.2, 1.3]], dtype=np.float32
)
MESSAGE_LIMIT = 64 * 1024
SERVICE = "inference.GRPCInferenceService"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("grpc")
    store = copy_demo_store(folder / "store")
    write_columns_pipeline(store / "shop" / "1")
    write_half_model(store / "half" / "1")
    write_iris_classifier(store / "zipped" / "1", zipmap=True)
    write_garbage(store / "zipped" / "2")  # FAILED: never served, version 1 goes on
    write_model_toml(store / "zipped", 'version_policy = "all"\ndefault_version = 1\n')
    for version in ("1", "2"):
        shutil.copytree(DEMO_STORE / "iris" / version, store / "canary" / version)
    write_model_toml(
        store / "canary",
        "default_version = 1\n[rollout]\ncandidate = 2\ntraffic_percent = 100\n"
        'sticky_header = "x-routing-key"\n',
    )
    env = {"GRPC_MAX_MESSAGE_BYTES": str(MESSAGE_LIMIT), "LOG_FORMAT": "json"}
    with start_server(store, folder, env=env, ready_path="/v2/health/ready") as server:
        yield server


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=server.grpc_target)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def channel(server: LiveServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield channel


def reference(path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def tensor(name: str, array: np.ndarray, datatype: str) -> triton.InferInput:
    given = triton.InferInput(name, list(array.shape), datatype)
    given.set_data_from_numpy(array)
    return given


def failure(call, *args, **kwargs) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call(*args, **kwargs)
    return caught.value


def status(error: InferenceServerException) -> str:
    return error.status().removeprefix("StatusCode.")


# -- health and metadata -----------------------------------------------------------------------


def test_health_and_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    about = client.get_server_metadata()
    assert about.name == "onnx-model-server" and about.version
    metadata = client.get_model_metadata("iris", as_json=True)
    assert metadata["versions"] == ["1", "2"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert [o["name"] for o in metadata["outputs"]] == ["label", "probabilities"]
    shop = client.get_model_metadata("shop", "1", as_json=True)
    assert [(i["name"], i["datatype"]) for i in shop["inputs"]] == [
        ("color", "BYTES"),
        ("size", "FP32"),
        ("count", "INT64"),
    ]


def test_model_readiness(client):
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", "1")
    assert not client.is_model_ready("zipped", "2")  # it exists, and failed to load
    assert status(failure(client.is_model_ready, "iris", "7")) == "NOT_FOUND"
    assert status(failure(client.is_model_ready, "nope")) == "NOT_FOUND"


# -- inference -----------------------------------------------------------------------------------


def test_fp32_raw_matches_onnxruntime(client):
    result = client.infer("iris", [tensor("input", IRIS_ROWS, "FP32")], request_id="42")
    labels, probabilities = reference(
        DEMO_STORE / "iris" / "2" / "model.onnx", {"input": IRIS_ROWS}
    )
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("iris", "2", "42")
    assert result.as_numpy("label").astype(str).tolist() == list(labels)
    np.testing.assert_array_equal(result.as_numpy("probabilities"), probabilities)


def test_fp32_typed_contents_name_a_version(channel):
    request = pb.ModelInferRequest(model_name="iris", model_version="1")
    given = request.inputs.add(name="input", datatype="FP32", shape=list(IRIS_ROWS.shape))
    given.contents.fp32_contents.extend(IRIS_ROWS.ravel().tolist())
    request.outputs.add(name="probabilities")
    response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    _, probabilities = reference(DEMO_STORE / "iris" / "1" / "model.onnx", {"input": IRIS_ROWS})
    assert response.model_version == "1"
    assert [o.name for o in response.outputs] == ["probabilities"]
    got = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(3, 3)
    np.testing.assert_array_equal(got, probabilities)


def test_bytes_per_column_model(client, server):
    colors = np.array([["red"], ["blue"], ["green"]], dtype=object)
    sizes = np.array([[2.0], [7.5], [5.0]], dtype=np.float32)
    counts = np.array([[1], [9], [4]], dtype=np.int64)
    inputs = [
        tensor("color", colors, "BYTES"),
        tensor("size", sizes, "FP32"),
        tensor("count", counts, "INT64"),
    ]
    result = client.infer("shop", inputs)
    feeds = {"color": colors, "size": sizes, "count": counts}
    labels, probabilities = reference(server.store / "shop" / "1" / "model.onnx", feeds)
    assert result.as_numpy("label").astype(str).tolist() == list(labels)
    assert set(labels) <= set(COLUMNS_LABELS)
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=1e-6)


def test_fp16_raw_in_and_out(client):
    rows = np.array([[0.5, -1.25], [65504.0, 3.0e-5]], dtype=np.float16)
    result = client.infer("half", [tensor("x", rows, "FP16")])
    assert result.as_numpy("half").dtype == np.float16
    np.testing.assert_array_equal(result.as_numpy("half"), rows)
    np.testing.assert_array_equal(result.as_numpy("single"), rows.astype(np.float32))
    outputs = {o.name: o.datatype for o in result.get_response().outputs}
    assert outputs == {"half": "FP16", "single": "FP32"}


def test_only_the_outputs_asked_for(client):
    wanted = [triton.InferRequestedOutput("probabilities")]
    result = client.infer("iris", [tensor("input", IRIS_ROWS, "FP32")], outputs=wanted)
    assert [o.name for o in result.get_response().outputs] == ["probabilities"]
    assert result.as_numpy("label") is None
    error = failure(
        client.infer, "iris", [tensor("input", IRIS_ROWS, "FP32")],
        outputs=[triton.InferRequestedOutput("scores")],
    )  # fmt: skip
    assert status(error) == "INVALID_ARGUMENT"
    assert "no output 'scores'; its outputs are label, probabilities" in error.message()


def test_a_zipmap_output_is_left_out_unless_asked_for(client):
    result = client.infer("zipped", [tensor("input", IRIS_ROWS, "FP32")])
    assert [o.name for o in result.get_response().outputs] == ["output_label"]
    error = failure(
        client.infer, "zipped", [tensor("input", IRIS_ROWS, "FP32")],
        outputs=[triton.InferRequestedOutput("output_probability")],
    )  # fmt: skip
    assert status(error) == "INVALID_ARGUMENT" and "ZipMap" in error.message()


def test_a_rollout_answers_calls_that_name_no_version(client, server):
    result = client.infer(
        "canary", [tensor("input", IRIS_ROWS, "FP32")], headers={"x-routing-key": "a"}
    )
    assert result.get_response().model_version == "2"  # the candidate takes 100%
    pinned = client.infer("canary", [tensor("input", IRIS_ROWS, "FP32")], model_version="1")
    assert pinned.get_response().model_version == "1"
    report = httpx.get(f"{server.url}/models/canary/rollout").json()
    assert report["state"] == "active" and report["answered"] == {"2": 1}


# -- errors --------------------------------------------------------------------------------------


def test_error_codes_name_the_input_and_what_the_model_expects(client):
    error = failure(client.infer, "iris", [tensor("input", IRIS_ROWS[:, :3].copy(), "FP32")])
    assert status(error) == "INVALID_ARGUMENT"
    assert (
        "input 'input' takes shape [-1, 4]" in error.message() and "got [3, 3]" in error.message()
    )
    error = failure(client.infer, "iris", [tensor("input", IRIS_ROWS.astype(np.float64), "FP64")])
    assert status(error) == "INVALID_ARGUMENT" and "input 'input' takes" in error.message()
    error = failure(client.infer, "iris", [tensor("features", IRIS_ROWS, "FP32")])
    assert (
        "unknown input 'features'" in error.message() and "missing input 'input'" in error.message()
    )
    nan = IRIS_ROWS.copy()
    nan[1, 2] = np.nan
    error = failure(client.infer, "iris", [tensor("input", nan, "FP32")])
    assert status(error) == "INVALID_ARGUMENT" and "row 1" in error.message()
    error = failure(client.infer, "nope", [tensor("input", IRIS_ROWS, "FP32")])
    assert status(error) == "NOT_FOUND" and "model 'nope' not found" in error.message()
    error = failure(client.infer, "iris", [tensor("input", IRIS_ROWS, "FP32")], model_version="9")
    assert status(error) == "NOT_FOUND" and "no version 9" in error.message()
    error = failure(client.infer, "zipped", [tensor("input", IRIS_ROWS, "FP32")], model_version="2")
    assert status(error) == "UNAVAILABLE" and "failed to load" in error.message()


def test_a_message_over_the_limit_is_resource_exhausted(client):
    rows = np.ones((MESSAGE_LIMIT // 16 + 1, 4), dtype=np.float32)  # just over the limit
    error = failure(client.infer, "iris", [tensor("input", rows, "FP32")])
    assert status(error) == "RESOURCE_EXHAUSTED"
    assert client.infer("iris", [tensor("input", rows[:1000], "FP32")]).as_numpy("label").shape == (
        1000,
    )


def test_lying_shapes_are_invalid_argument_and_cost_nothing(channel, client):
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    for shape, data in (
        ([3, 4], IRIS_ROWS[:2].tobytes()),  # fewer bytes than the shape holds
        ([1, 4], IRIS_ROWS.tobytes()),  # more
        ([2**40, 4], IRIS_ROWS.tobytes()),  # rows beyond MAX_BATCH_ROWS
        ([3, 2**60], IRIS_ROWS.tobytes()),  # a product far beyond memory
    ):
        request = pb.ModelInferRequest(model_name="iris", raw_input_contents=[data])
        request.inputs.add(name="input", datatype="FP32", shape=shape)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, shape
        assert "input 'input'" in caught.value.details()
    strings = struct.pack("<I", 3) + b"red"
    request = pb.ModelInferRequest(model_name="shop", raw_input_contents=[strings])
    request.inputs.add(name="color", datatype="BYTES", shape=[1, 2**31])
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "1 BYTES elements; its shape holds 2147483648" in caught.value.details()
    assert client.is_server_live()


def test_bytes_that_are_not_a_message_are_invalid_argument(channel):
    infer = channel.unary_unary(f"/{SERVICE}/ModelInfer")  # bytes in, bytes out
    with pytest.raises(grpc.RpcError) as caught:
        infer(b"\x0a\xff\xff\xff\xff\x0f")  # field 1 claims a length far past the end
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid ModelInferRequest message" in caught.value.details()


# -- operations ----------------------------------------------------------------------------------


def test_request_ids_metrics_and_access_log(channel, server):
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    request = pb.ModelInferRequest(model_name="iris", raw_input_contents=[IRIS_ROWS.tobytes()])
    request.inputs.add(name="input", datatype="FP32", shape=list(IRIS_ROWS.shape))
    _, call = stub.ModelInfer.with_call(request, metadata=(("x-request-id", "trace-grpc-1"),))
    assert ("x-request-id", "trace-grpc-1") in call.trailing_metadata()
    _, call = stub.ModelInfer.with_call(request)
    generated = dict(call.trailing_metadata())["x-request-id"]
    assert generated and generated != "trace-grpc-1"
    metrics = httpx.get(f"{server.url}/metrics").text
    route = f'route="/{SERVICE}/ModelInfer"'
    counted = [line for line in metrics.splitlines() if line.startswith("model_server_requests")]
    assert any(
        route in line and 'status="0"' in line and 'model="iris"' in line for line in counted
    )
    lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    logged = [line for line in lines if line.get("request_id") == "trace-grpc-1"]
    assert len(logged) == 1
    assert logged[0]["route"] == f"/{SERVICE}/ModelInfer"
    assert (logged[0]["grpc_code"], logged[0]["model"], logged[0]["version"]) == ("OK", "iris", "2")


def test_health_service(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE):
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as caught:
        stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_the_services(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    asks = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=f"{SERVICE}"),
    ]
    listed, described = list(stub.ServerReflectionInfo(iter(asks)))
    names = {s.name for s in listed.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names
    files = described.file_descriptor_response.file_descriptor_proto
    assert files and b"ModelInferRequest" in files[0]


# -- fuzzing -------------------------------------------------------------------------------------

DATATYPES = ["FP32", "FP64", "FP16", "INT64", "INT32", "INT8", "UINT8", "BOOL", "BYTES", "fp32", ""]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    model=st.sampled_from(["iris", "shop", "half", "nope"]),
    inputs=st.lists(
        st.tuples(
            st.sampled_from(["input", "color", "size", "count", "x", ""]),
            st.sampled_from(DATATYPES),
            st.lists(st.integers(-2, 2**62), max_size=3),
            st.binary(max_size=64),
        ),
        max_size=3,
    ),
    raw=st.booleans(),
)
def test_fuzzed_requests_get_an_answer_or_a_client_error(channel, model, inputs, raw):
    request = pb.ModelInferRequest(model_name=model)
    for name, datatype, shape, data in inputs:
        given = request.inputs.add(name=name, datatype=datatype, shape=shape)
        if raw:
            request.raw_input_contents.append(data)
        else:
            given.contents.bytes_contents.append(data)
    try:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    except grpc.RpcError as error:
        assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), (
            error.code(),
            error.details(),
        )


def test_the_message_kserves_sdk_sends(channel, server):
    # What KServe's Python SDK (kserve 0.21, InferRequest.to_grpc) builds from an input set from
    # numpy: the model name, an empty version, the id, the input's binary_data_size as an
    # int64 parameter, and the tensor in raw_input_contents.
    rows = IRIS_ROWS[:2]
    request = pb.ModelInferRequest(
        model_name="iris", model_version="", id="kserve-grpc-1", raw_input_contents=[rows.tobytes()]
    )
    given = request.inputs.add(name="input", shape=[2, 4], datatype="FP32")
    given.parameters["binary_data_size"].int64_param = rows.nbytes

    answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)

    assert (answer.model_name, answer.model_version, answer.id) == ("iris", "2", "kserve-grpc-1")
    names = [output.name for output in answer.outputs]
    probabilities = answer.raw_output_contents[names.index("probabilities")]
    _, expected = reference(server.store / "iris" / "2" / "model.onnx", {"input": rows})
    np.testing.assert_allclose(
        np.frombuffer(probabilities, dtype="<f4").reshape(2, 3), expected, rtol=1e-6
    )
