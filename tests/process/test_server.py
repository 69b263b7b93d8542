"""The real process: `python -m app` on a free loopback port, over a copy of the demo store."""

from __future__ import annotations

import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import live_server
import numpy as np
import onnxruntime as ort
import pytest
from live_server import (
    DEMO_STORE,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    LiveServer,
    check_problem,
    copy_demo_store,
)

MAX_BODY_BYTES = 4096
# uvicorn re-raises the SIGTERM it handled once shutdown is complete, so either status is clean.
CLEAN_EXIT = (0, -signal.SIGTERM)
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [6.0, 2.7, 4.2, 1.3]]
IRIS_LABELS = ("setosa", "versicolor", "virginica")
ROW = IRIS_ROWS[0]


def start_server(tmp_path: Path, **env: str) -> LiveServer:
    """A ready server over `tmp_path`/store (a copy of the demo store, made on first use)."""
    store = tmp_path / "store"
    if not store.exists():
        copy_demo_store(store)
    return live_server.start_server(
        store, tmp_path, env={"MAX_BODY_BYTES": str(MAX_BODY_BYTES), **env}
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with start_server(tmp_path_factory.mktemp("server")) as server:
        yield server


def iris_reference(rows: list[list[float]], version: int = 2) -> tuple[list, list]:
    path = DEMO_STORE / "iris" / str(version) / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, {"input": np.array(rows, dtype=np.float32)})
    return [str(label) for label in labels], [
        pytest.approx(dict(zip(IRIS_LABELS, row, strict=True)), rel=1e-5, abs=1e-6)
        for row in probabilities.tolist()
    ]


def test_starts_and_turns_ready(server):
    assert httpx.get(server.url + "/health/live").json() == {"status": "live"}
    assert httpx.get(server.url + "/health/ready").json() == {"status": "ready"}
    models = httpx.get(server.url + "/models").json()["models"]
    assert [m["name"] for m in models] == ["diabetes", "diabetes_pipeline", "iris"]


def test_prediction_equals_onnxruntime(server):
    response = httpx.post(
        server.url + "/predict", json={"model": "iris", "version": 1, "features": IRIS_ROWS[1]}
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    labels, probabilities = iris_reference(IRIS_ROWS[1:2], 1)
    assert response.json() == {
        "model": "iris",
        "version": 1,
        "prediction": labels[0],
        "probabilities": probabilities[0],
    }


def test_batch_equals_onnxruntime_in_order(server):
    response = httpx.post(
        server.url + "/predict/batch", json={"model": "iris", "instances": IRIS_ROWS}
    )

    assert response.status_code == 200, response.text
    labels, probabilities = iris_reference(IRIS_ROWS, 2)
    assert response.json() == {
        "model": "iris",
        "version": 2,
        "predictions": labels,
        "probabilities": probabilities,
    }


def test_invalid_request_is_a_422_problem(server):
    response = httpx.post(server.url + "/predict", json={"model": "iris", "features": [1, 2, 3]})

    body = check_problem(response, 422, ["features"])
    assert body["errors"][0]["loc"] == ["features"]
    assert "iris expects 4 features" in body["detail"]


def test_body_over_the_limit_is_413(server):
    content = b'{"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]}' + b" " * MAX_BODY_BYTES

    response = httpx.post(
        server.url + "/predict", content=content, headers={"content-type": "application/json"}
    )

    check_problem(response, 413)


def _raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_chunked_body_over_the_limit_is_413(server):
    """No Content-Length: the limit must hold for a body sent with chunked transfer encoding."""
    body = b'{"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]}' + b" " * (MAX_BODY_BYTES * 2)
    request = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + b"%x\r\n" % len(body)
        + body
        + b"\r\n0\r\n\r\n"
    )

    answer = _raw_request(server.port, request)

    status_line = answer.split(b"\r\n", 1)[0]
    assert re.match(rb"HTTP/1\.1 413 ", status_line), answer[:500]


def test_uvicorn_serves_the_contract_s_app_main_app(tmp_path):
    """`uvicorn app.main:app`, as CONTRACT section 4 names the ASGI app, still serves."""
    store = copy_demo_store(tmp_path / "store")
    command = f'exec "{sys.executable}" -m uvicorn app.main:app --host 127.0.0.1 --port "$PORT"'
    with live_server.start_server(store, tmp_path, command=["sh", "-c", command]) as server:
        response = httpx.post(server.url + "/predict", json={"model": "iris", "features": ROW})
        labels, _ = iris_reference([ROW], 2)

        assert response.status_code == 200, response.text
        assert response.json()["prediction"] == labels[0]
        assert response.headers["x-request-id"]
        check_problem(httpx.post(server.url + "/predict", json={"model": "nope"}), 422)


def test_two_workers_serve_predictions(tmp_path):
    server = start_server(tmp_path, WORKERS="2")
    try:
        # Each worker loads the store itself: wait until both have started and are ready.
        deadline = time.monotonic() + START_TIMEOUT_S
        while server.output().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, f"two workers did not start:\n{server.output()}"
            time.sleep(0.1)
        ready_in_a_row = 0
        while ready_in_a_row < 20:
            assert time.monotonic() < deadline, f"workers not all ready:\n{server.output()}"
            ok = httpx.get(server.url + "/health/ready").status_code == 200
            ready_in_a_row = ready_in_a_row + 1 if ok else 0

        labels, probabilities = iris_reference(IRIS_ROWS, 2)
        for _ in range(10):  # a new connection each time, so that both workers answer
            for row, label, probs in zip(IRIS_ROWS, labels, probabilities, strict=True):
                response = httpx.post(
                    server.url + "/predict", json={"model": "iris", "features": row}
                )
                assert response.status_code == 200, response.text
                assert response.json()["prediction"] == label
                assert response.json()["probabilities"] == probs

        started = time.monotonic()
        returncode = server.stop()
        assert time.monotonic() - started < 5.0, server.output()
        assert returncode in CLEAN_EXIT, server.output()
        assert server.output().count("Application shutdown complete") == 2, server.output()
        with pytest.raises(httpx.TransportError):
            httpx.get(server.url + "/health/live", timeout=1.0)
    finally:
        server.stop()
        print(f"--- server output ---\n{server.output()}")


def test_exits_soon_after_sigterm(tmp_path):
    server = start_server(tmp_path)
    try:
        assert httpx.get(server.url + "/health/ready").status_code == 200
        server.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        returncode = server.process.wait(STOP_TIMEOUT_S)
        assert time.monotonic() - started < 5.0, server.output()
        assert returncode == 0, server.output()  # a drained SIGTERM is a clean exit
        assert "Application shutdown complete" in server.output()
        with pytest.raises(httpx.TransportError):
            httpx.get(server.url + "/health/live", timeout=1.0)
    finally:
        server.stop()
        print(f"--- server output ---\n{server.output()}")
