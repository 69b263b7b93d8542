"""Shapes and numbers at the edge of what Python and numpy hold, sent to a real `python -m app`
over HTTP /v2 and gRPC: each is a clean 4xx (INVALID_ARGUMENT, or 404 / NOT_FOUND for a version
that cannot exist), with no traceback in the log, and an HTTP connection that stays open for the
next request."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from live_server import LiveServer, copy_demo_store

from app.grpc.proto import grpc_predict_v2_pb2 as pb
from app.grpc.proto import grpc_predict_v2_pb2_grpc as pb_grpc

HEADER = "Inference-Header-Content-Length"
# Past Python's default limit on the digits int() reads (4,300).
LONG_NUMBER = "9" * 5000
HUGE = 2**62
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("edge-shapes")
    with LiveServer.start(copy_demo_store(tmp / "store"), tmp) as live:
        yield live


def iris_infer(shape: list[int], data: list[float] | None = None) -> bytes:
    tensor = {"name": "input", "shape": shape, "datatype": "FP32", "data": data or []}
    return json.dumps({"inputs": [tensor]}).encode()


def binary_infer(shape: list[int], size: int) -> bytes:
    tensor = {"name": "input", "shape": shape, "datatype": "FP32"}
    tensor["parameters"] = {"binary_data_size": size}
    return json.dumps({"inputs": [tensor]}).encode()


ONE_ROW = iris_infer([1, 4], IRIS_ROW)
ZERO_BESIDE_HUGE = binary_infer([0, HUGE], 0)

CASES = [
    pytest.param(
        "POST", "/v2/models/iris/infer", iris_infer([0, HUGE]), {}, 400, id="json-0-x-2**62"
    ),
    pytest.param(
        "POST", "/v2/models/iris/infer", ZERO_BESIDE_HUGE, {HEADER: str(len(ZERO_BESIDE_HUGE))},
        400, id="binary-0-x-2**62",
    ),
    pytest.param(
        "POST", "/v2/models/iris/infer", iris_infer([HUGE, 0]), {}, 400, id="json-2**62-x-0"
    ),
    pytest.param("GET", f"/v2/models/iris/versions/{LONG_NUMBER}/ready", b"", {}, 404, id="ready"),
    pytest.param("GET", f"/v2/models/iris/versions/{LONG_NUMBER}", b"", {}, 404, id="metadata"),
    pytest.param(
        "POST", f"/v2/models/iris/versions/{LONG_NUMBER}/infer", ONE_ROW, {}, 404, id="infer"
    ),
    pytest.param(
        "POST", "/v2/models/iris/infer", ONE_ROW, {HEADER: LONG_NUMBER}, 400, id="header-length"
    ),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "headers", "status"), CASES)
def test_http_edge_shapes_are_clean_4xx_on_a_kept_connection(
    server, method, path, body, headers, status
):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        socket = connection.sock

        assert response.status == status, answer
        assert response.getheader("content-type") == "application/json"
        message = json.loads(answer)["error"]
        assert "Traceback" not in message and len(message) < 1000
        assert (response.getheader("connection") or "").lower() != "close"
        # The same connection answers the next request.
        connection.request("POST", "/v2/models/iris/infer", body=ONE_ROW)
        follow = connection.getresponse()
        assert follow.status == 200, follow.read()
        follow.read()
        assert connection.sock is socket
    finally:
        connection.close()
    assert "Traceback" not in server.output()


@pytest.fixture(scope="module")
def stub(server: LiveServer) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def grpc_infer(shape: list[int], raw: bytes | None, version: str = "") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="iris", model_version=version)
    tensor = request.inputs.add(name="input", datatype="FP32", shape=shape)
    if raw is None:
        tensor.contents.fp32_contents.extend([])
    else:
        request.raw_input_contents.append(raw)
    return request


ROW_BYTES = np.array([IRIS_ROW], dtype=np.float32).tobytes()


@pytest.mark.parametrize(
    ("method", "request_message", "code"),
    [
        pytest.param("ModelInfer", grpc_infer([0, HUGE], b""), "INVALID_ARGUMENT", id="raw"),
        pytest.param("ModelInfer", grpc_infer([0, HUGE], None), "INVALID_ARGUMENT", id="contents"),
        pytest.param(
            "ModelInfer", grpc_infer([1, 4], ROW_BYTES, LONG_NUMBER), "NOT_FOUND", id="version"
        ),
        pytest.param(
            "ModelReady", pb.ModelReadyRequest(name="iris", version=LONG_NUMBER), "NOT_FOUND",
            id="ready",
        ),
        pytest.param(
            "ModelMetadata", pb.ModelMetadataRequest(name="iris", version=LONG_NUMBER),
            "NOT_FOUND", id="metadata",
        ),
    ],
)  # fmt: skip
def test_grpc_edge_shapes_are_clean_errors(server, stub, method, request_message, code):
    with pytest.raises(grpc.RpcError) as caught:
        getattr(stub, method)(request_message, timeout=10)

    assert caught.value.code() is grpc.StatusCode[code]
    assert len(caught.value.details()) < 1000
    answer = stub.ModelInfer(grpc_infer([1, 4], ROW_BYTES), timeout=10)
    assert answer.model_name == "iris"
    assert "Traceback" not in server.output()


def test_the_log_holds_no_traceback_after_every_case(server: LiveServer) -> None:
    assert "Traceback" not in server.output()
    assert " 500 " not in server.output()
