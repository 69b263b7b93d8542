"""Operations of the real process: access log, request timeout, SIGTERM drain, metrics across
workers, and a lying Content-Length. Each test starts `python -m app` with its own settings."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import live_server
import numpy as np
import onnxruntime as ort
import pytest
from live_server import DEMO_STORE, LiveServer, copy_demo_store, read_response
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import FLUSH_INTERVAL_S

START_TIMEOUT_S = 15.0
IRIS_ROW = [6.7, 3.0, 5.2, 2.3]
IRIS_LABELS = ("setosa", "versicolor", "virginica")
PREDICT_BODY = json.dumps({"model": "iris", "features": IRIS_ROW}).encode()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    """`start(LOG_FORMAT="json")`: a ready server over a copy of the demo store; killed after."""
    store = copy_demo_store(tmp_path / "store")
    servers: list[LiveServer] = []

    def start_server(**env: str) -> LiveServer:
        server = live_server.start_server(
            store,
            tmp_path,
            env={"TMPDIR": str(tmp_path), **env},  # TMPDIR: where the multiprocess metrics go
            split_stderr=True,
            start_timeout_s=START_TIMEOUT_S,
        )
        servers.append(server)
        return server

    try:
        yield start_server
    finally:
        for server in servers:
            server.kill()
            print(server.output())


def iris_answer(row: list[float], version: int = 2) -> dict[str, Any]:
    """What /predict must answer for `row`, from onnxruntime itself."""
    path = DEMO_STORE / "iris" / str(version) / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, {"input": np.array([row], dtype=np.float32)})
    return {
        "model": "iris",
        "version": version,
        "prediction": str(labels[0]),
        "probabilities": pytest.approx(
            dict(zip(IRIS_LABELS, probabilities[0].tolist(), strict=True)), rel=1e-5, abs=1e-6
        ),
    }


def request_head(path: str, content_length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    ).encode()


def read_until_closed(sock: socket.socket, timeout_s: float) -> bytes:
    """Everything the server sends until it closes the connection; fails if it never does."""
    sock.settimeout(timeout_s)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the connection was still open after {timeout_s} s: {b''.join(chunks)!r}")
    return b"".join(chunks)


def access_lines(text: str) -> list[dict[str, Any]]:
    """The JSON access log records in a stderr; every line of it must be JSON."""
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        record = json.loads(line)  # a line that is not JSON fails here
        assert isinstance(record, dict), line
        if record.get("logger") == "model_server.access":
            records.append(record)
    return records


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    response = httpx.get(url + "/metrics", timeout=5.0)
    assert response.status_code == 200, response.text
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    ]


# -- the access log ---------------------------------------------------------------------------


def test_json_access_log_one_line_per_request(start):
    server = start(LOG_FORMAT="json")
    url = server.url
    sent = [
        ("t-predict", "POST", "/predict", {"json": {"model": "iris", "features": IRIS_ROW}}),
        (
            "t-batch",
            "POST",
            "/predict/batch",
            {"json": {"model": "iris", "version": 1, "instances": [IRIS_ROW]}},
        ),
        ("t-invalid", "POST", "/predict", {"json": {"model": "iris", "features": [1]}}),
        ("t-describe", "GET", "/models/iris", {}),
        ("t-unknown", "GET", "/models/nope", {}),
    ]
    answers = {
        rid: httpx.request(method, url + path, headers={"X-Request-ID": rid}, **options)
        for rid, method, path, options in sent
    }
    generated = httpx.get(url + "/models").headers["x-request-id"]
    assert server.stop() == 0, server.output()

    records = access_lines(server.errors())
    by_id: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_id.setdefault(record["request_id"], []).append(record)
    for rid, response in answers.items():
        assert response.headers["x-request-id"] == rid
        assert len(by_id.get(rid, [])) == 1, (rid, records)
        assert by_id[rid][0]["status"] == response.status_code
    assert len(by_id.get(generated, [])) == 1, (generated, records)
    # One line per request: the readiness polls, the requests above, nothing more.
    assert len([r for r in records if not r["path"].startswith("/health/")]) == len(sent) + 1
    assert len(by_id) == len(records), "a request id was logged twice"
    for record in records:
        assert isinstance(record["duration_ms"], int | float) and record["duration_ms"] >= 0
        assert record["method"] in ("GET", "POST")
        assert {"ts", "level", "route", "model", "version"} <= set(record), record

    def fields(rid: str) -> tuple[Any, ...]:
        r = by_id[rid][0]
        version = None if r["version"] is None else str(r["version"])
        return r["method"], r["path"], r["route"], r["status"], r["model"], version

    assert fields("t-predict") == ("POST", "/predict", "/predict", 200, "iris", "2")
    assert fields("t-batch") == ("POST", "/predict/batch", "/predict/batch", 200, "iris", "1")
    assert fields("t-invalid") == ("POST", "/predict", "/predict", 422, None, None)
    assert fields("t-describe")[:4] == ("GET", "/models/iris", "/models/{name}", 200)
    assert fields("t-unknown") == ("GET", "/models/nope", "/models/{name}", 404, None, None)
    assert fields(generated)[:4] == ("GET", "/models", "/models", 200)


def test_access_log_off_writes_none(start):
    server = start(LOG_FORMAT="json", ACCESS_LOG="false")
    for _ in range(3):
        httpx.post(server.url + "/predict", json={"model": "iris", "features": IRIS_ROW})
    httpx.get(server.url + "/models/nope")
    assert server.stop() == 0, server.output()

    errors = server.errors()
    assert access_lines(errors) == []
    assert "Application startup complete" in errors  # the other logs still go out


def test_text_access_log_by_default(start):
    server = start()
    response = httpx.post(server.url + "/predict", json={"model": "iris", "features": IRIS_ROW})
    assert response.status_code == 200
    assert server.stop() == 0, server.output()

    lines = [line for line in server.errors().splitlines() if "model_server.access" in line]
    predict = [line for line in lines if '"POST /predict" 200' in line]
    assert len(predict) == 1, lines
    assert not predict[0].lstrip().startswith("{"), predict


# -- the request timeout ----------------------------------------------------------------------


def test_slow_body_is_answered_504_and_the_server_goes_on(start):
    server = start(REQUEST_TIMEOUT_S="0.5")

    with socket.create_connection(("127.0.0.1", server.port), timeout=5.0) as sock:
        sock.sendall(request_head("/predict", len(PREDICT_BODY)) + PREDICT_BODY[:12])
        time.sleep(1.5)
        status, headers, body = read_response(sock)

    assert status == 504, body
    assert headers["content-type"].startswith("application/problem+json")
    assert headers.get("x-request-id")
    problem = json.loads(body)
    assert {"type", "title", "status", "detail"} <= set(problem), problem
    assert problem["status"] == 504
    assert all(isinstance(problem[k], str) and problem[k] for k in ("type", "title", "detail"))
    after = httpx.post(server.url + "/predict", json={"model": "iris", "features": IRIS_ROW})
    assert after.status_code == 200, after.text
    assert after.json() == iris_answer(IRIS_ROW)
    samples = scrape(server.url)
    timed_out = [
        v
        for n, labels, v in samples
        if n == "model_server_requests_total"
        and labels["route"] == "/predict"
        and labels["status"] == "504"
    ]
    assert timed_out == [1]


# -- SIGTERM ----------------------------------------------------------------------------------


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(start):
    server = start(DRAIN_TIMEOUT_S="10")

    with socket.create_connection(("127.0.0.1", server.port), timeout=10.0) as sock:
        sock.sendall(request_head("/predict", len(PREDICT_BODY)) + PREDICT_BODY[:12])
        time.sleep(0.3)  # the server has read the head: the request is in flight
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.5)
        assert server.process.poll() is None, f"exited mid-request:\n{server.output()}"
        with pytest.raises(httpx.TransportError):  # no new connections while draining
            httpx.get(server.url + "/health/live", timeout=1.0)
        sock.sendall(PREDICT_BODY[12:])
        status, _, body = read_response(sock)

    assert status == 200, body
    assert json.loads(body) == iris_answer(IRIS_ROW)
    returncode = server.process.wait(5.0)
    assert returncode == 0, server.output()
    assert time.monotonic() - signalled < 6.0, server.output()


def test_sigterm_with_a_stuck_request_exits_after_the_drain_timeout(start):
    server = start(DRAIN_TIMEOUT_S="1")

    with socket.create_connection(("127.0.0.1", server.port), timeout=10.0) as sock:
        sock.sendall(request_head("/predict", len(PREDICT_BODY)) + PREDICT_BODY[:12])
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        returncode = server.process.wait(6.0)  # never completes its body
        took = time.monotonic() - signalled
        answer = read_until_closed(sock, 2.0)

    assert 0.8 <= took < 4.0, (took, server.output())  # it waited for the drain, then no longer
    assert returncode == 0, server.output()
    assert not re.match(rb"HTTP/1\.1 200 ", answer), answer


# -- metrics across workers -------------------------------------------------------------------


def test_two_workers_report_every_request_in_metrics(start):
    server = start(WORKERS="2")
    deadline = time.monotonic() + START_TIMEOUT_S
    while server.errors().count("Application startup complete") < 2:
        assert time.monotonic() < deadline, f"two workers did not start:\n{server.output()}"
        time.sleep(0.05)

    def predict(_: int) -> str:
        # httpx.post opens a new connection each time: either worker may answer it.
        response = httpx.post(server.url + "/predict", json={"model": "iris", "features": IRIS_ROW})
        assert response.status_code == 200, response.text
        return response.headers["x-request-id"]

    with ThreadPoolExecutor(6) as pool:
        ids = list(pool.map(predict, range(60)))

    # Generated ids start with a prefix of their process: both workers answered some.
    assert len({rid.rsplit("-", 1)[0] for rid in ids}) == 2, ids
    # A worker moves its tallies into the shared files at least every FLUSH_INTERVAL_S.
    deadline = time.monotonic() + 10 * FLUSH_INTERVAL_S
    while _predicts_counted(scrape(server.url)) < 60:
        assert time.monotonic() < deadline, "the workers' counts never added up to 60"
        time.sleep(0.1)
    for _ in range(4):  # whichever worker answers the scrape
        samples = scrape(server.url)
        predicts = [
            (labels, v)
            for n, labels, v in samples
            if n == "model_server_requests_total" and labels["route"] == "/predict"
        ]
        assert sum(v for _, v in predicts) == 60, predicts
        assert all(
            (labels["model"], labels["version"], labels["status"]) == ("iris", "2", "200")
            for labels, _ in predicts
        ), predicts
        durations = sum(
            v
            for n, labels, v in samples
            if n == "model_server_request_duration_seconds_count" and labels["route"] == "/predict"
        )
        assert durations == 60
        loaded = [
            v
            for n, labels, v in samples
            if n == "model_server_loaded_versions" and labels["model"] == "iris"
        ]
        assert loaded and all(v == 2 for v in loaded), loaded
    assert server.stop() == 0, server.output()


# -- a lying Content-Length -------------------------------------------------------------------


def test_body_longer_than_its_content_length_is_never_served(start):
    server = start(MAX_BODY_BYTES="1000")
    body = PREDICT_BODY + b" " * (5000 - len(PREDICT_BODY))

    with socket.create_connection(("127.0.0.1", server.port), timeout=5.0) as sock:
        sock.sendall(request_head("/predict", 10) + body)  # says 10 bytes, sends 5000
        answer = read_until_closed(sock, 5.0)  # the server closes the connection

    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert statuses, answer
    assert all(s in (b"400", b"413") for s in statuses), answer
    after = httpx.post(server.url + "/predict", json={"model": "iris", "features": IRIS_ROW})
    assert after.status_code == 200, after.text
    assert after.json() == iris_answer(IRIS_ROW)


def _predicts_counted(samples: list[tuple[str, dict[str, str], float]]) -> float:
    return sum(
        v
        for n, labels, v in samples
        if n == "model_server_requests_total" and labels["route"] == "/predict"
    )
