"""The prediction log and feedback on real processes with two workers: sampling within binomial
bounds, the key-hash rule, a model's own share, redaction, rotation, CloudEvents received by a
real HTTP receiver on loopback, gRPC calls logged like HTTP ones, a stalled and a read-only sink
under load with no failed request and every event counted, and feedback accuracy and mean
absolute error equal to the figures computed from the test's own data, whichever worker
answers."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from live_server import LiveServer, wait_until
from onnx_factories import (
    columns_rows,
    diabetes_rows,
    write_classifier,
    write_columns_pipeline,
    write_model_toml,
    write_regressor,
)
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_diabetes, load_iris

from app.grpc.proto import grpc_predict_v2_pb2 as pb
from app.grpc.proto import grpc_predict_v2_pb2_grpc as pb_grpc

NAMES = ("length", "width", "depth", "height")
KEY = "redaction-key"
PERCENT = 30
SETTLE_S = 20.0


# -- a CloudEvents receiver on loopback ---------------------------------------------------------


@dataclass
class Receiver:
    """An HTTP server that keeps every event it receives; it can stall for a while."""

    events: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    stall_s: float = 0.0
    stall_until: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # the sink keeps its connection open

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                with receiver.lock:
                    if receiver.stall_s and receiver.stall_until is None:
                        receiver.stall_until = time.monotonic() + receiver.stall_s
                    until = receiver.stall_until
                if until is not None and time.monotonic() < until:
                    time.sleep(min(until - time.monotonic(), 10.0))
                    self.close_connection = True
                    return  # no answer: the sink gives up after its timeout
                with receiver.lock:
                    receiver.events.append(
                        ({k.lower(): v for k, v in self.headers.items()}, json.loads(body))
                    )
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def by_id(self) -> dict[str, dict[str, tuple[dict[str, str], Any]]]:
        """ce-id -> ce-type -> (headers, body)."""
        found: dict[str, dict[str, tuple[dict[str, str], Any]]] = {}
        with self.lock:
            for headers, body in self.events:
                found.setdefault(headers["ce-id"], {})[headers["ce-type"]] = (headers, body)
        return found


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), receiver.handler())
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver, f"http://127.0.0.1:{server.server_address[1]}/events"
    finally:
        server.shutdown()
        server.server_close()


# -- helpers ------------------------------------------------------------------------------------


def every_worker_ready(server: LiveServer) -> None:
    streak = [0]

    def check() -> bool:
        ok = FRESH.get(server.url + "/health/ready").status_code == 200
        streak[0] = streak[0] + 1 if ok else 0
        return streak[0] >= 20

    wait_until(check, "both workers ready", 30.0, server=server)


def metric(server: LiveServer, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = FRESH.get(server.url + "/metrics").text
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def events(server: LiveServer, sink: str) -> dict[str, float]:
    found = metric(server, "model_server_prediction_log_events_total")
    return {dict(k)["outcome"]: v for k, v in found.items() if dict(k)["sink"] == sink}


def read_lines(folder: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(folder.glob("predictions-*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def settled(server: LiveServer, sinks: tuple[str, ...], total: int) -> dict[str, dict[str, float]]:
    """Each sink's counts once they add up to `total` events (bounded wait)."""
    seen: dict[str, dict[str, float]] = {}

    def check() -> bool:
        seen.update({sink: events(server, sink) for sink in sinks})
        return all(sum(seen[sink].values()) == total for sink in sinks)

    wait_until(check, f"{total} events counted by {sinks}", SETTLE_S, server=server,
               context=lambda: str(seen))  # fmt: skip
    return seen


# A new connection per call (none kept alive): either worker may answer each.
FRESH = httpx.Client(timeout=10.0, limits=httpx.Limits(max_keepalive_connections=0))


def post(server: LiveServer, body: dict[str, Any], **headers: str) -> httpx.Response:
    response = FRESH.post(server.url + "/predict", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response


def slot(model: str, key: str) -> int:
    """The key's slot, computed here from its definition: BLAKE2b-64 of model NUL key, 10,000
    slots."""
    digest = hashlib.blake2b(f"{model}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000


def binomial_bounds(n: int, p: float, tail: float = 1e-6) -> tuple[int, int]:
    """The smallest and largest counts outside which a Binomial(n, p) falls with probability
    under `tail` on each side."""
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    low, below = 0, 0.0
    while below + pmf[low] < tail:
        below += pmf[low]
        low += 1
    high, above = n, 0.0
    while above + pmf[high] < tail:
        above += pmf[high]
        high -= 1
    return low, high


# -- one server: sampling, keys, a model's own share, redaction, rotation, CloudEvents, gRPC ---


@pytest.fixture
def logging_server(tmp_path: Path, receiver: tuple[Receiver, str]) -> Iterator[LiveServer]:
    store = tmp_path / "store"
    write_classifier(store / "shop" / "1", "logistic", ("no", "yes"), metadata={
        "task": "classification", "features": list(NAMES), "redact": ["width"]})  # fmt: skip
    write_columns_pipeline(store / "parts" / "1", task="regression")
    write_model_toml(store / "parts", "[prediction_log]\npercent = 100\n")
    env = {
        "WORKERS": "2",
        "PREDICTION_LOG_DIR": str(tmp_path / "log"),
        "PREDICTION_LOG_PERCENT": str(PERCENT),
        "PREDICTION_LOG_KEY_HEADER": "X-User",
        "PREDICTION_LOG_REDACT_KEY": KEY,
        "PREDICTION_LOG_URL": receiver[1],
        "PREDICTION_LOG_MAX_BYTES": "8192",
    }
    with LiveServer.start(store, tmp_path, env=env) as server:
        every_worker_ready(server)
        yield server


def test_sampling_keys_overrides_redaction_rotation_and_cloudevents(
    logging_server: LiveServer, receiver: tuple[Receiver, str], tmp_path: Path
) -> None:
    server = logging_server
    rows = load_iris().data.tolist()
    sent: dict[str, tuple[list[float], httpx.Response]] = {}

    def send(rid: str, row: list[float], **headers: str) -> None:
        body = {"model": "shop", "features": row}
        sent[rid] = (row, post(server, body, **{"x-request-id": rid, **headers}))

    n_random = 400
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: send(f"rand-{i}", rows[i % 150]), range(n_random)))
        keys = [f"user-{j}" for j in range(120)]
        for repeat in range(2):  # the same key twice: in both times or out both times
            ids = [(f"key-{j}-{repeat}", j) for j in range(len(keys))]
            list(pool.map(lambda item: send(item[0], rows[item[1]], **{"X-User": keys[item[1]]}),
                          ids))  # fmt: skip
        parts = columns_rows(30)
        for i, row in enumerate(parts):
            post(server, {"model": "parts", "features": row},
                 **{"x-request-id": f"part-{i}", "X-User": f"user-{i}"})  # fmt: skip
    with grpc.insecure_channel(server.grpc_target) as channel:
        request = pb.ModelInferRequest(
            model_name="shop", raw_input_contents=[np.array([rows[0]], np.float32).tobytes()]
        )
        request.inputs.add(name="input", datatype="FP32", shape=[1, 4])
        grpc_in = next(k for k in keys if slot("shop", k) < PERCENT * 100)
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            request, metadata=(("x-request-id", "grpc-1"), ("x-user", grpc_in)), timeout=10
        )

    folder = tmp_path / "log"
    state: dict[str, Any] = {"lines": -1}

    def written_everywhere() -> bool:
        # Both sinks have counted as many events as the files hold, and the files stopped
        # growing between two looks.
        count = len(read_lines(folder))
        counts = {sink: events(server, sink) for sink in ("file", "http")}
        done = count == state["lines"] and all(sum(c.values()) == count for c in counts.values())
        state.update(lines=count, counts=counts)
        return done

    wait_until(written_everywhere, "every event counted", SETTLE_S, server=server,
               context=lambda: str(state))  # fmt: skip
    counts = state["counts"]
    lines = {line["request_id"]: line for line in read_lines(folder)}
    assert counts["file"]["written"] == len(lines)

    # Without a key: each request in with probability 30%.
    low, high = binomial_bounds(n_random, PERCENT / 100)
    kept = sum(rid.startswith("rand-") for rid in lines)
    assert low <= kept <= high, (low, kept, high)

    # With a key: in exactly when the key's slot is under 30% of the slots, every time.
    expected_in = {j for j, key in enumerate(keys) if slot("shop", key) < PERCENT * 100}
    for repeat in range(2):
        assert {j for j in range(len(keys)) if f"key-{j}-{repeat}" in lines} == expected_in

    # model.toml's [prediction_log] percent = 100 keeps every request of "parts".
    assert all(f"part-{i}" in lines for i in range(30))

    # Redaction: the keyed hash of the value, every other feature in the clear.
    for j in expected_in:
        line = lines[f"key-{j}-0"]
        row = sent[f"key-{j}-0"][0]
        digest = hmac.new(KEY.encode(), str(row[1]).encode(), hashlib.sha256).hexdigest()[:32]
        expected = {name: [value] for name, value in zip(NAMES, row, strict=True)}
        assert line["inputs"] == expected | {"width": [digest]}
        assert line["answer"]["predictions"] == [sent[f"key-{j}-0"][1].json()["prediction"]]

    # gRPC calls are logged like HTTP ones.
    assert lines["grpc-1"]["protocol"] == "grpc"
    assert lines["grpc-1"]["route"] == "/inference.GRPCInferenceService/ModelInfer"
    assert lines["grpc-1"]["status"] == 0

    # Rotation: no file passes PREDICTION_LOG_MAX_BYTES, and there are several.
    files = list(folder.glob("predictions-*.jsonl"))
    assert len(files) > 2 and all(f.stat().st_size <= 8192 for f in files)

    # CloudEvents: a request and a response event per logged request, as KServe's logger.
    got = receiver[0].by_id()
    assert counts["http"]["written"] == len(got) == len(lines)
    assert set(got) == set(lines)
    for j in expected_in:
        rid = f"key-{j}-0"
        request_headers, request_body = got[rid]["org.kubeflow.serving.inference.request"]
        response_headers, response_body = got[rid]["org.kubeflow.serving.inference.response"]
        for headers in (request_headers, response_headers):
            assert headers["ce-specversion"] == "1.0"
            assert headers["ce-id"] == rid
            assert headers["ce-source"] == "/models/shop/versions/1"
            assert headers["ce-inferenceservicename"] == "shop"
            assert headers["content-type"] == "application/json"
        assert request_body == {"inputs": lines[rid]["inputs"]}  # V1's columnar inputs
        assert response_body["predictions"] == [sent[rid][1].json()["prediction"]]


# -- a stalled HTTP sink and a read-only folder, under load ---------------------------------


def test_a_stalled_and_a_read_only_sink_fail_no_request_and_count_every_event(
    tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    store = tmp_path / "store"
    write_classifier(store / "shop" / "1", "forest", ("no", "yes"))
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    receiver[0].stall_s = 3.0
    env = {
        "WORKERS": "2",
        "PREDICTION_LOG_DIR": str(folder),
        "PREDICTION_LOG_URL": receiver[1],
        "PREDICTION_LOG_QUEUE_ROWS": "40",
        "PREDICTION_LOG_HTTP_TIMEOUT_S": "0.5",
    }
    # root writes into a read-only folder anyway; without that capability it cannot.
    command = [sys.executable, "-m", "app"]
    if os.geteuid() == 0:
        command = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", *command]
    with LiveServer.start(store, tmp_path, env=env, command=command) as server:
        every_worker_ready(server)
        total = 600
        rows = load_iris().data.tolist()
        with (
            httpx.Client(base_url=server.url, timeout=10.0) as client,
            ThreadPoolExecutor(8) as pool,
        ):
            statuses = list(pool.map(
                lambda i: client.post("/predict", json={"model": "shop", "features": rows[i % 150]}
                                      ).status_code, range(total)))  # fmt: skip
        assert statuses == [200] * total
        counts = settled(server, ("file", "http"), total)
        # Nothing reaches the read-only folder: each event failed there, or was dropped before
        # it (with a queue this short, a burst can fill it while lines are being formatted).
        assert counts["file"]["written"] == 0 and counts["file"]["failed"] > total / 2
        http = counts["http"]
        assert http["dropped"] > 0 and http["failed"] > 0
        assert http["written"] == len(receiver[0].by_id())
        assert list(folder.iterdir()) == []


# -- feedback across workers --------------------------------------------------------------------


def test_feedback_figures_equal_the_tests_own_whichever_worker_answers(tmp_path: Path) -> None:
    store = tmp_path / "store"
    classes = (3, 7, 9)
    write_classifier(store / "flowers" / "1", "forest", classes)
    write_classifier(store / "flowers" / "2", "naive_bayes", classes)
    write_model_toml(store / "flowers", "[rollout]\ncandidate = 2\ntraffic_percent = 50\n")
    write_regressor(store / "sugar" / "1")
    with LiveServer.start(store, tmp_path, env={"WORKERS": "2"}) as server:
        every_worker_ready(server)
        iris = load_iris()
        answers = [
            post(server, {"model": "flowers", "features": [float(v) for v in iris.data[i]]})
            for i in range(150)
        ]
        items = [
            {"request_id": a.headers["x-request-id"], "actual": classes[iris.target[i]],
             "version": a.json()["version"], "prediction": a.json()["prediction"]}
            for i, a in enumerate(answers)
        ]  # fmt: skip
        for start in range(0, 150, 25):  # six calls, each to either worker
            response = FRESH.post(
                server.url + "/feedback",
                json={"model": "flowers", "items": items[start : start + 25]},
            )
            assert response.status_code == 200, response.text
        sugar = diabetes_rows(40)
        truth = load_diabetes().target[:40]
        predicted = [
            post(server, {"model": "sugar", "features": row}).json()["prediction"] for row in sugar
        ]
        for start in range(0, 40, 10):
            batch = [
                {"request_id": f"s-{i}", "actual": float(truth[i]), "version": 1,
                 "prediction": predicted[i]}
                for i in range(start, start + 10)
            ]  # fmt: skip
            FRESH.post(server.url + "/feedback", json={"model": "sugar", "items": batch})

        expected = {}
        for version in (1, 2):
            mine = [it for it in items if it["version"] == version]
            right = sum(it["prediction"] == it["actual"] for it in mine)
            expected[str(version)] = (len(mine), right / len(mine))
        mae = sum(abs(p - t) for p, t in zip(predicted, truth, strict=True)) / 40
        for _ in range(6):  # new connections: both workers answer some of these
            report = FRESH.get(server.url + "/models/flowers/rollout").json()
            for version, (count, accuracy) in expected.items():
                total = report["feedback"][version]["total"]
                assert total["matched"] == count
                assert total["accuracy"] == pytest.approx(accuracy)
            gauges = {
                (dict(k)["model"], dict(k)["version"], dict(k)["window"]): v
                for k, v in metric(server, "model_server_feedback_accuracy").items()
            }
            for version, (_, accuracy) in expected.items():
                assert gauges[("flowers", version, "total")] == pytest.approx(accuracy)
            errors = metric(server, "model_server_feedback_mean_abs_error")
            assert {dict(k)["window"]: v for k, v in errors.items()} == pytest.approx(
                {"total": mae, "recent": mae}
            )
        counted = metric(server, "model_server_feedback_total")
        assert sum(counted.values()) == 150 + 40
