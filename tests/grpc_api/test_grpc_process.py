"""The gRPC server's life with the process: several workers on one port, SIGTERM draining the
calls in flight, GRPC_PORT=0, and a port that is taken. Each test starts `python -m app`."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from live_server import LiveServer, copy_demo_store, server_environ, wait_until
from onnx_factories import write_slow_model

from app.grpc.proto import grpc_predict_v2_pb2 as pb
from app.grpc.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from loadtest.server import free_port

pytestmark = pytest.mark.slow  # real server processes

IRIS_ROW = np.array([[6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
# A run of seconds through write_slow_model's layers, on a fast machine too (MAX_BATCH_ROWS is
# raised to allow it; the request and the answer stay under gRPC clients' 4 MiB default).
SLOW_ROWS = 15_000


def start(tmp_path: Path, **env: str) -> LiveServer:
    """A ready `python -m app` over a copy of the demo store (or the one already at tmp_path)."""
    store = tmp_path / "store"
    if not store.exists():
        copy_demo_store(store)
    return LiveServer.start(store, tmp_path, env={"TMPDIR": str(tmp_path), **env})


def infer_request(model: str, rows: np.ndarray, name: str = "input") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, raw_input_contents=[rows.tobytes()])
    request.inputs.add(name=name, datatype="FP32", shape=list(rows.shape))
    return request


def test_two_workers_serve_one_grpc_port(tmp_path):
    with start(tmp_path, WORKERS="2") as server:
        two_workers_serve_one_grpc_port(server)


def two_workers_serve_one_grpc_port(server: LiveServer) -> None:
    deadline = time.monotonic() + 30
    while server.output().count("Application startup complete") < 2:
        assert time.monotonic() < deadline, f"two workers did not start:\n{server.output()}"
        time.sleep(0.05)
    prefixes: set[str] = set()
    deadline = time.monotonic() + 30
    while len(prefixes) < 2 and time.monotonic() < deadline:
        # A new connection each time: the kernel picks the worker.
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            try:
                _, call = stub.ModelInfer.with_call(infer_request("iris", IRIS_ROW), timeout=10)
            except grpc.RpcError as error:  # the other worker may still be loading its store
                assert error.code() is grpc.StatusCode.UNAVAILABLE, error
                continue
        # Generated request ids start with a prefix of their process.
        prefixes.add(dict(call.trailing_metadata())["x-request-id"].rsplit("-", 1)[0])
    assert len(prefixes) == 2, prefixes


def test_sigterm_drains_the_grpc_call_in_flight_then_exits_0(tmp_path):
    write_slow_model(copy_demo_store(tmp_path / "store") / "slow" / "1", layers=2000)
    with start(tmp_path, DRAIN_TIMEOUT_S="30", MAX_BATCH_ROWS=str(SLOW_ROWS)) as server:
        sigterm_drains_the_call_in_flight(server)


def sigterm_drains_the_call_in_flight(server: LiveServer) -> None:
    rows = np.ones((SLOW_ROWS, 64), dtype=np.float32)
    outcome: dict[str, Any] = {}

    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        # Ready means the store's first scan is done; the slow model may still be warming up.
        ready = pb.ModelReadyRequest(name="slow")
        wait_until(lambda: stub.ModelReady(ready, timeout=5).ready, "slow ready", 60, server=server)

        def slow_call() -> None:
            try:
                outcome["answer"] = stub.ModelInfer(infer_request("slow", rows, "x"), timeout=60)
            except grpc.RpcError as error:
                outcome["error"] = error
            outcome["done"] = time.monotonic()

        caller = threading.Thread(target=slow_call)
        caller.start()
        time.sleep(0.5)  # the call is running
        assert "done" not in outcome, f"the slow call ended before SIGTERM: {outcome}"
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.3)
        with (
            grpc.insecure_channel(server.grpc_target) as fresh,
            pytest.raises(grpc.RpcError) as refused,
        ):
            pb_grpc.GRPCInferenceServiceStub(fresh).ServerLive(pb.ServerLiveRequest(), timeout=2)
        caller.join(60)

    assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert "error" not in outcome, outcome.get("error")
    answer = outcome["answer"]
    assert [o.name for o in answer.outputs] == ["y"] and list(answer.outputs[0].shape) == [
        SLOW_ROWS,
        64,
    ]
    assert outcome["done"] > signalled
    assert server.process.wait(10) == 0, server.output()


def listening_ports(pid: int) -> set[int]:
    """The TCP ports `pid` listens on: its socket inodes matched with /proc/net/tcp{,6}."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink()
        except OSError:
            continue  # closed since the listing
        if str(target).startswith("socket:["):
            inodes.add(str(target)[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            listening = fields[3] == "0A"
            if listening and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_grpc_port_0_serves_no_grpc(tmp_path):
    with start(tmp_path, GRPC_PORT="0") as server:
        # No port at all, not an ephemeral one: the process listens on its HTTP port alone.
        assert listening_ports(server.process.pid) == {server.port}
    assert "gRPC" not in server.output()


def test_the_grpc_port_is_listened_on_when_set(tmp_path):
    """The other side of the check above, so that it cannot pass by reading no sockets."""
    with start(tmp_path) as server:
        assert listening_ports(server.process.pid) == {server.port, server.grpc_port}


def test_a_taken_grpc_port_stops_the_start_with_a_clear_error(tmp_path):
    store = copy_demo_store(tmp_path / "store")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = server_environ()
        env.update(MODEL_STORE=str(store), PORT=str(free_port()), GRPC_PORT=str(port))
        result = subprocess.run(
            [sys.executable, "-m", "app"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode != 0
    assert (
        f"cannot listen for gRPC on 127.0.0.1:{port} (GRPC_PORT)" in result.stdout + result.stderr
    )
