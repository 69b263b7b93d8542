"""Hostile and careless clients against the real process: header floods, idle and trickling
sockets, more connections than MAX_CONNECTIONS, error lists without end, an answer that cannot
be encoded, forged log lines, and SIGTERM under keep-alive and gRPC load. After each, the server
must answer /predict within a second and hold its memory within 50 MB of where it started.

Limits are set small (a few MB of headers, tens of sockets, one-second timeouts) so that the
tests stay cheap; the defaults are the README's."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from live_server import LiveServer, check_problem, copy_demo_store, read_response, wait_until
from prometheus_client.parser import text_string_to_metric_families

from app.grpc.proto import grpc_predict_v2_pb2 as pb
from app.grpc.proto import grpc_predict_v2_pb2_grpc as pb_grpc

LIMITS = {
    "MAX_HEADER_BYTES": "16384",
    "MAX_HEADER_COUNT": "50",
    "HEADER_TIMEOUT_S": "1",
    "BODY_TIMEOUT_S": "1",
    "KEEP_ALIVE_TIMEOUT_S": "1.5",
    "MAX_CONNECTIONS": "40",
    "DRAIN_IDLE_S": "2",
    "GRPC_MAX_CONCURRENT_CALLS": "4",
    "MAX_ERRORS_LISTED": "10",
}
IRIS_ROW = [6.7, 3.0, 5.2, 2.3]
PREDICT = json.dumps({"model": "iris", "version": 2, "features": IRIS_ROW}).encode()
RSS_SLACK_BYTES = 50 * 1024 * 1024
REPEATS = 3


def rss_bytes(server: LiveServer) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None
    return int(match.group(1)) * 1024


def serves_within_a_second(server: LiveServer, rss_at_start: int) -> None:
    """/predict answers 200 within 1 s, and RSS is within 50 MB of `rss_at_start`."""
    started = time.monotonic()
    response = httpx.post(server.url + "/predict", content=PREDICT, headers=JSON, timeout=5)
    assert response.status_code == 200, response.text
    assert time.monotonic() - started < 1.0
    assert rss_bytes(server) - rss_at_start < RSS_SLACK_BYTES


JSON = {"content-type": "application/json"}


def connect(server: LiveServer, timeout_s: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout_s)


def read_all(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """Everything the server sends until it closes (or `limit` bytes)."""
    data = bytearray()
    while len(data) < limit:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def status_and_body(answer: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, json.loads(body)


def post_head(length: int) -> bytes:
    return (
        b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n" % length
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("hostile")
    store = copy_demo_store(tmp / "store")
    with LiveServer.start(store, tmp, env={"TMPDIR": str(tmp), **LIMITS}) as live:
        yield live


# -- 1. header size and count --------------------------------------------------------------


def flood_headers(server: LiveServer, megabytes: int) -> bytes:
    """A request whose header section runs to `megabytes` MB; the server's answer."""
    line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    with connect(server) as sock:
        try:
            sock.sendall(post_head(len(PREDICT)))
            for _ in range(megabytes * 1024):
                sock.sendall(line)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading, as it may
        return read_all(sock)


def test_a_header_flood_is_431_and_costs_no_memory(server):
    rss = rss_bytes(server)
    for _ in range(REPEATS):
        floods = [threading.Thread(target=flood_headers, args=(server, 2)) for _ in range(4)]
        for flood in floods:
            flood.start()
        answer = flood_headers(server, 2)
        for flood in floods:
            flood.join(30)
        status, headers, body = status_and_body(answer)
        assert status == 431, answer[:300]
        assert headers["content-type"] == "application/problem+json"
        assert headers["connection"] == "close"
        assert "MAX_HEADER_BYTES" in str(body["detail"])
        serves_within_a_second(server, rss)


def test_too_many_headers_is_431_through_the_app(server):
    headers = {f"x-h{i}": "1" for i in range(60)} | JSON
    response = httpx.post(server.url + "/predict", content=PREDICT, headers=headers, timeout=5)
    body = check_problem(response, 431)
    assert "MAX_HEADER_COUNT" in body["detail"]
    assert response.headers["connection"] == "close"
    # The access log has it (its lines of a turn of the loop go out at the turn's end).
    wait_until(lambda: '"POST /predict" 431' in server.output(), "the access line", 5.0)


# -- 2. slow and idle sockets, the connection cap ------------------------------------------


def test_idle_sockets_close_and_connections_past_the_cap_get_503(server):
    rss = rss_bytes(server)
    for _ in range(REPEATS):
        idle = [connect(server) for _ in range(int(LIMITS["MAX_CONNECTIONS"]))]
        try:
            with connect(server) as late:
                late.sendall(post_head(len(PREDICT)) + b"\r\n" + PREDICT)
                status, headers, body = status_and_body(read_all(late))
            assert status == 503
            assert headers["connection"] == "close"
            assert headers["retry-after"] == "1"
            assert "MAX_CONNECTIONS" in str(body["detail"])
            # Probes pass the cap: answered, then the connection closes.
            for probe, answered in (("/health/live", "live"), ("/health/ready", "ready")):
                with connect(server) as late:
                    late.sendall(f"GET {probe} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                    status, headers, body = status_and_body(read_all(late))
                assert (status, body["status"]) == (200, answered)
                assert headers["connection"] == "close"
            # HEADER_TIMEOUT_S later, the server has closed every socket that sent nothing.
            started = time.monotonic()
            for sock in idle:
                assert read_all(sock) == b""
            assert time.monotonic() - started < 3.0
        finally:
            for sock in idle:
                sock.close()
        serves_within_a_second(server, rss)


def test_a_kept_alive_connection_closes_after_keep_alive_timeout_s(server):
    with connect(server) as sock:
        sock.sendall(post_head(len(PREDICT)) + b"\r\n" + PREDICT)
        status, headers, body = read_response(sock)
        # An answer sized by its Content-Length, so that the connection can stay open after it.
        assert "content-length" in headers, headers
        assert status == 200 and json.loads(body)["model"] == "iris"
        started = time.monotonic()
        assert read_all(sock) == b""  # closed by the server, with nothing more said
    assert 1.0 < time.monotonic() - started < 3.5


def test_trickled_headers_and_a_slow_body_are_408(server):
    rss = rss_bytes(server)
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /predict HTTP/1.1\r\n")
        for i in range(20):  # a line every 0.2 s would hold the connection for ever
            try:
                sock.sendall(b"X-Slow-%d: 1\r\n" % i)
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.2)
        answer = read_all(sock)
    status, _, body = status_and_body(answer)
    assert status == 408
    assert "HEADER_TIMEOUT_S" in str(body["detail"])
    assert time.monotonic() - started < 4.5
    with connect(server) as sock:
        sock.sendall(post_head(len(PREDICT)) + b"\r\n" + PREDICT[:10])
        status, _, body = status_and_body(read_all(sock))
    assert status == 408
    assert "BODY_TIMEOUT_S" in str(body["detail"])
    serves_within_a_second(server, rss)


# -- 3. error lists ------------------------------------------------------------------------


def test_error_lists_are_capped_and_cheap(server):
    rss = rss_bytes(server)
    listed = int(LIMITS["MAX_ERRORS_LISTED"])
    names = {f"unknown_{i}": 1.0 for i in range(200_000)}
    cases = [
        ("/predict", {"model": "iris", "features": names}, 200_000 + 4),
        ("/predict", {"model": "iris", "features": IRIS_ROW, **names}, 200_000),
        ("/predict/batch", {"model": "iris", "instances": [["x"] * 4] * 5_000}, 20_000),
    ]
    for path, payload, count in cases:
        content = json.dumps(payload).encode()
        for _ in range(REPEATS):
            started = time.monotonic()
            response = httpx.post(server.url + path, content=content, headers=JSON, timeout=30)
            took = time.monotonic() - started
            body = check_problem(response, 422)
            assert len(body["errors"]) == listed
            assert body["error_count"] == count
            assert len(response.content) < 10_000
            assert took < 2.0, (path, took)
    v2 = {
        "inputs": [
            {"name": f"in_{i}", "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROW}
            for i in range(20_000)
        ]
    }
    started = time.monotonic()
    response = httpx.post(server.url + "/v2/models/iris/infer", json=v2, timeout=30)
    assert response.status_code == 400
    assert len(response.content) < 10_000
    assert "at most 2048" in response.json()["error"]
    assert time.monotonic() - started < 2.0
    v2["inputs"] = v2["inputs"][:2000]  # within MAX_INPUTS: the model names what it lacks
    response = httpx.post(server.url + "/v2/models/iris/infer", json=v2, timeout=30)
    assert response.status_code == 400
    assert len(response.content) < 10_000
    assert "(and 1996 more)" in response.json()["error"], response.json()
    serves_within_a_second(server, rss)


# -- 5. an answer that cannot be encoded ---------------------------------------------------


def test_an_answer_that_cannot_be_encoded_is_a_clean_500(tmp_path):
    store = copy_demo_store(tmp_path / "store")
    metadata = store / "iris" / "2" / "metadata.json"
    meta = json.loads(metadata.read_text())
    meta["labels"][2] = "SURROGATE"  # the row below is a virginica
    metadata.write_text(json.dumps(meta).replace("SURROGATE", "\\udc80"))
    (store / "iris" / "2" / "samples.json").unlink()  # its rows would fail the version
    with (
        LiveServer.start(store, tmp_path, env={"TMPDIR": str(tmp_path)}) as server,
        httpx.Client(base_url=server.url, timeout=5) as client,
    ):
        for _ in range(REPEATS):
            check_problem(client.post("/predict", content=PREDICT, headers=JSON), 500)
            check_problem(client.get("/models/iris"), 500)
        # The connection was kept: the same client still gets answers.
        assert client.get("/health/live").status_code == 200
        metrics = client.get("/metrics").text
    log = server.output()
    assert '"POST /predict" 500' in log and '"GET /models/{name}" 500' not in log
    assert " 200 " not in "".join(line for line in log.splitlines() if "POST /predict" in line)
    assert "Exception in ASGI application" not in log
    requests = {
        (s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "model_server_requests_total"
    }
    assert requests[("/predict", "500")] == REPEATS
    assert ("/predict", "200") not in requests


# -- 6. forged log lines -------------------------------------------------------------------


def test_text_logs_escape_control_characters(server):
    httpx.get(server.url + "/nope%0D%0A2026-01-01 00:00:00,000 INFO forged%1B[2J", timeout=5)
    wait_until(lambda: "/nope" in server.output(), "the access line", 5.0)
    log = server.output()
    assert not any(line.startswith("2026-01-01") for line in log.splitlines())
    assert "\x1b" not in log
    assert "/nope\\r\\n2026-01-01" in log


def test_json_logs_keep_the_warning_of_a_folder_name_that_is_not_utf8(tmp_path):
    store = copy_demo_store(tmp_path / "store")
    bad = store.as_posix().encode() + b"/bad\xffname"
    Path(bad.decode("utf-8", "surrogateescape")).mkdir()
    env = {"TMPDIR": str(tmp_path), "LOG_FORMAT": "json"}
    with LiveServer.start(store, tmp_path, env=env) as server:
        pass
    lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    skipped = [line for line in lines if "bad" in line["message"] and "skipping" in line["message"]]
    assert skipped, server.output()
    assert "Logging error" not in server.output()


# -- 7. SIGTERM under keep-alive and gRPC load ---------------------------------------------


def infer_request(rows: int) -> pb.ModelInferRequest:
    data = np.tile(np.array(IRIS_ROW, dtype=np.float32), (rows, 1))
    request = pb.ModelInferRequest(model_name="iris", raw_input_contents=[data.tobytes()])
    request.inputs.add(name="input", datatype="FP32", shape=list(data.shape))
    return request


def refused(server: LiveServer, protocol: str, reason: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "model_server_refused_total" and sample.labels == {
                "protocol": protocol,
                "reason": reason,
            }:
                return sample.value
    return 0.0


def test_grpc_health_calls_pass_a_full_call_cap(server):
    """Health calls on one connection, made while a burst of inference calls on another fills
    GRPC_MAX_CONCURRENT_CALLS (some come back RESOURCE_EXHAUSTED), all answer; only the
    inference calls are refused and counted."""

    async def infer(stub: pb_grpc.GRPCInferenceServiceStub) -> grpc.StatusCode:
        try:
            await stub.ModelInfer(infer_request(5_000), timeout=30)
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    async def probe(call: Awaitable[object]) -> object:
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            return error.code()

    async def probes(stub: pb_grpc.GRPCInferenceServiceStub, until: asyncio.Event) -> list[object]:
        answers: list[object] = []
        for _ in range(1_000):
            if until.is_set():
                break
            answers += await asyncio.gather(
                probe(stub.ServerLive(pb.ServerLiveRequest(), timeout=30)),
                probe(stub.ServerReady(pb.ServerReadyRequest(), timeout=30)),
                probe(stub.ModelReady(pb.ModelReadyRequest(name="iris"), timeout=30)),
            )
        return answers

    async def burst() -> tuple[list[grpc.StatusCode], list[object]]:
        async with (
            grpc.aio.insecure_channel(server.grpc_target) as loaded,
            grpc.aio.insecure_channel(server.grpc_target) as probing,
        ):
            load = pb_grpc.GRPCInferenceServiceStub(loaded)
            prober = pb_grpc.GRPCInferenceServiceStub(probing)
            await prober.ServerLive(pb.ServerLiveRequest(), timeout=30)  # connected
            over = asyncio.Event()
            probing_task = asyncio.ensure_future(probes(prober, over))
            codes: list[grpc.StatusCode] = []
            for round_index in range(20):  # at least 5 rounds, and until the cap was full
                codes += await asyncio.gather(*(infer(load) for _ in range(40)))
                if round_index >= 4 and grpc.StatusCode.RESOURCE_EXHAUSTED in codes:
                    break
            over.set()
            return codes, await probing_task

    before = refused(server, "grpc", "concurrency")
    codes, answers = asyncio.run(burst())
    exhausted = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert exhausted > 0, "the burst never filled the cap"
    assert len(answers) >= 3
    assert all(not isinstance(a, grpc.StatusCode) for a in answers), set(map(str, answers))
    assert all(a.live if isinstance(a, pb.ServerLiveResponse) else a.ready for a in answers)
    assert refused(server, "grpc", "concurrency") - before == exhausted


def test_grpc_calls_past_the_cap_are_resource_exhausted_and_counted(server):
    rss = rss_bytes(server)

    async def burst(n: int, rows: int) -> list[grpc.StatusCode]:
        async with grpc.aio.insecure_channel(server.grpc_target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)

            async def one() -> grpc.StatusCode:
                try:
                    await stub.ModelInfer(infer_request(rows), timeout=30)
                except grpc.aio.AioRpcError as error:
                    return error.code()
                return grpc.StatusCode.OK

            return await asyncio.gather(*(one() for _ in range(n)))

    before = refused(server, "grpc", "concurrency")
    codes: list[grpc.StatusCode] = []
    for _ in range(10):  # a fast machine may answer a burst within the cap: until it is full
        codes += asyncio.run(burst(300, 256))
        if grpc.StatusCode.RESOURCE_EXHAUSTED in codes:
            break
    # Past grpc's own bound of 1,000 calls waiting for the server, it cancelled calls itself.
    codes += asyncio.run(burst(1_500, 1))
    exhausted = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, set(codes)
    assert exhausted > 0 and codes.count(grpc.StatusCode.OK) > 0
    assert refused(server, "grpc", "concurrency") - before == exhausted
    serves_within_a_second(server, rss)


def test_sigterm_answers_kept_alive_connections_and_refuses_grpc(tmp_path):
    store = copy_demo_store(tmp_path / "store")
    env = {"TMPDIR": str(tmp_path), "DRAIN_IDLE_S": "2"}
    server = LiveServer.start(store, tmp_path, env=env)
    try:
        connections = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)]
        connections += [
            http.client.HTTPConnection("127.0.0.1", server.port, timeout=10) for _ in range(19)
        ]
        for conn in connections:
            conn.request("POST", "/predict", body=PREDICT, headers=JSON)
            assert conn.getresponse().read()
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            stub.ModelInfer(infer_request(1), timeout=10)
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)  # past uvicorn's own reaction to the signal
            with pytest.raises(grpc.RpcError) as refused_call:
                stub.ModelInfer(infer_request(1), timeout=10)
        assert refused_call.value.code() is grpc.StatusCode.UNAVAILABLE
        for conn in connections:
            conn.request("POST", "/predict", body=PREDICT, headers=JSON)
            response = conn.getresponse()
            assert response.status == 200
            assert response.getheader("connection") == "close"
            assert json.loads(response.read())["model"] == "iris"
            conn.close()
        assert server.process.wait(15) in (0, -signal.SIGTERM)
    finally:
        server.kill()
    log = server.output()
    assert 'ModelInfer" UNAVAILABLE' in log, log
