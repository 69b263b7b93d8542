"""The prediction log in process: what a line holds (inputs by feature name for both input
layouts, the answer, failures), redaction, rotation by size and age, and a sink whose queue is
full. Sampling across workers, CloudEvents and stalled sinks are tested on real processes
(tests/process/test_prediction_log_workers.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from onnx_factories import (
    COLUMNS,
    columns_rows,
    write_classifier,
    write_columns_pipeline,
)

from app.config import Settings
from app.metrics import Metrics
from app.predlog.events import _numeric_columns
from app.predlog.files import PREFIX
from app.predlog.log import LINE_OPTIONS, PredictionLog
from app.predlog.sink import Sink
from ml.config import PredictionLogConfig

NAMES = ("length", "width", "depth", "height")
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
WAIT_S = 5.0


def lines(folder: Path, count: int) -> list[dict[str, Any]]:
    """The log's lines once there are `count` of them (bounded wait), oldest first."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = [
            json.loads(line)
            for path in sorted(folder.glob(f"{PREFIX}*.jsonl"))
            for line in path.read_text().splitlines()
        ]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) == count, found
            return found
        time.sleep(0.02)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    # Integer classes named by labels, features with names of this test's own.
    write_classifier(
        store / "shapes" / "1",
        "logistic",
        (3, 7, 9),
        metadata={"task": "classification", "features": list(NAMES), "labels": ["a", "b", "c"]},
    )
    write_columns_pipeline(store / "parts" / "1", task="regression")
    return store


def test_a_line_per_request_names_inputs_by_feature_with_the_answer(serve, store, tmp_path):
    folder = tmp_path / "log"
    rows = columns_rows(3)
    with serve(store, prediction_log_dir=folder) as client:
        one = client.post("/predict", json={"model": "shapes", "features": ROWS[0]})
        batch = client.post("/predict/batch", json={"model": "parts", "instances": rows})
        v2 = client.post(
            "/v2/models/shapes/infer",
            json={"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                              "data": ROWS[1]}]},
        )  # fmt: skip
        for response in (one, batch, v2):
            assert response.status_code == 200, response.text
        found = lines(folder, 3)
    # Lines of one turn of the log's formatter may come in another order: found by request id.
    by_id = {line["request_id"]: line for line in found}
    first, second, third = (by_id[r.headers["x-request-id"]] for r in (one, batch, v2))
    assert (first["model"], first["version"], first["protocol"]) == ("shapes", 1, "http")
    assert (first["route"], first["status"], first["error"]) == ("/predict", 200, None)
    # One list per feature, by name, one value per row.
    assert first["inputs"] == {name: [value] for name, value in zip(NAMES, ROWS[0], strict=True)}
    answer = one.json()
    assert first["answer"] == {
        "predictions": [answer["prediction"]],
        "probabilities": [answer["probabilities"]],
    }
    assert first["latency_ms"] > 0
    # One [N, 1] input per column, strings and integers kept.
    assert second["inputs"] == {name: [row[name] for row in rows] for name in COLUMNS}
    assert second["answer"] == {"predictions": batch.json()["predictions"]}
    # The V2 tensors, read back as rows by feature name, and the answer as /predict words it.
    assert third["route"] == "/v2/models/{name}/infer"
    assert third["inputs"] == {name: [value] for name, value in zip(NAMES, ROWS[1], strict=True)}
    classes = next(o for o in v2.json()["outputs"] if o["name"] == "label")["data"]
    named = {3: "a", 7: "b", 9: "c"}  # metadata.json's labels, in the order of the classes
    assert third["answer"]["predictions"] == [named[c] for c in classes]


def test_failed_requests_are_logged_with_their_status_and_error(serve, store, tmp_path):
    folder = tmp_path / "log"
    with serve(store, prediction_log_dir=folder) as client:
        refused = client.post("/predict", json={"model": "shapes", "features": [1.0, 2.0]})
        unknown = client.post("/predict", json={"model": "nothing", "features": [1.0]})
        assert (refused.status_code, unknown.status_code) == (422, 404)
        (line,) = lines(folder, 1)  # no model took the unknown one: nothing of a model to keep
    assert line["status"] == 422
    assert line["error"] == refused.json()["detail"]
    assert line["answer"] is None
    assert line["inputs"] is None  # the model never received them
    assert line["sent"] == [[1.0, 2.0]]  # as sent: two values cannot be named by feature


def keyed(key: str, value: Any) -> str:
    return hmac.new(key.encode(), str(value).encode(), hashlib.sha256).hexdigest()[:32]


def test_redacted_features_become_a_keyed_hash_or_null_without_a_key(serve, store, tmp_path):
    meta = store / "parts" / "1" / "metadata.json"
    meta.write_text(
        json.dumps({"task": "regression", "features": list(COLUMNS), "redact": ["color"]})
    )
    rows = columns_rows(3)
    for key, expected in (
        ("a secret", [keyed("a secret", row["color"]) for row in rows]),
        (None, [None] * 3),
    ):
        folder = tmp_path / f"log-{key is None}"
        with serve(store, prediction_log_dir=folder, prediction_log_redact_key=key) as client:
            response = client.post("/predict/batch", json={"model": "parts", "instances": rows})
            assert response.status_code == 200, response.text
            (line,) = lines(folder, 1)
        assert line["inputs"]["color"] == expected
        assert line["inputs"]["count"] == [row["count"] for row in rows]


def test_redact_naming_no_feature_keeps_the_version_out(serve, store):
    meta = store / "parts" / "1" / "metadata.json"
    meta.write_text(json.dumps({"task": "regression", "features": list(COLUMNS),
                                "redact": ["colour"]}))  # fmt: skip
    with serve(store) as client:
        models = {m["name"]: m for m in client.get("/models").json()["models"]}
    (version,) = models["parts"]["versions"]
    assert version["state"] == "FAILED"
    assert "'redact'" in version["error"] and "colour" in version["error"]


def test_files_rotate_by_size_and_age_and_keep_every_line(serve, store, tmp_path):
    folder = tmp_path / "log"
    max_bytes = 4096
    with serve(
        store, prediction_log_dir=folder, prediction_log_max_bytes=max_bytes,
        prediction_log_max_files=100,
    ) as client:  # fmt: skip
        for index in range(60):
            row = ROWS[index % len(ROWS)]
            assert client.post("/predict", json={"model": "shapes", "features": row}).is_success
        found = lines(folder, 60)
    files = sorted(folder.glob(f"{PREFIX}*.jsonl"))
    assert len(files) > 2
    assert all(path.stat().st_size <= max_bytes for path in files)
    assert len({line["request_id"] for line in found}) == 60

    aged = tmp_path / "aged"
    with serve(store, prediction_log_dir=aged, prediction_log_max_age_s=0.3) as client:
        assert client.post("/predict", json={"model": "shapes", "features": ROWS[0]}).is_success
        lines(aged, 1)
        time.sleep(0.4)
        assert client.post("/predict", json={"model": "shapes", "features": ROWS[1]}).is_success
        lines(aged, 2)
    assert len(list(aged.glob(f"{PREFIX}*.jsonl"))) == 2


def test_a_worker_keeps_at_most_max_files_closed_files(serve, store, tmp_path):
    folder = tmp_path / "log"
    with serve(
        store, prediction_log_dir=folder, prediction_log_max_bytes=4096,
        prediction_log_max_files=2,
    ) as client:  # fmt: skip
        for _ in range(60):
            assert client.post("/predict", json={"model": "shapes", "features": ROWS[0]}).is_success
        deadline = time.monotonic() + WAIT_S
        while client.get("/metrics").text.count('outcome="written",sink="file"} 60.0') == 0:
            assert time.monotonic() < deadline, "the 60 lines were not written"
            time.sleep(0.05)
    assert len(list(folder.glob(f"{PREFIX}*.jsonl"))) == 3  # two closed, one being written


class _Held(Sink):
    """A sink whose writes wait until released."""

    name = "held"

    def __init__(self, queue_rows: int) -> None:
        super().__init__(queue_rows)
        self.release = threading.Event()
        self.seen: list[bytes] = []

    def write(self, batch: Sequence[bytes], events: int) -> None:
        self.release.wait(WAIT_S)
        self.seen.extend(batch)
        self.written += events


def test_a_full_queue_drops_and_counts_without_waiting():
    sink = _Held(queue_rows=10)
    started = time.perf_counter()
    for index in range(25):
        sink.offer(b"line %d\n" % index, 1)
    sink.offer(b"eleven rows\n", 11)  # more rows than the whole queue takes
    assert time.perf_counter() - started < 0.5
    assert (sink.queued_rows, sink.dropped) == (10, 16)
    sink.start()
    sink.release.set()
    sink.stop(WAIT_S)
    assert (sink.written, sink.dropped, sink.failed) == (10, 16, 0)
    assert sink.seen == [b"line %d\n" % index for index in range(10)]
    assert sink.queued_rows == 0
    # Rows taken out free room for more.
    sink.offer(b"ten rows\n", 10)
    assert sink.dropped == 16


def test_numpy_values_keep_their_short_form():
    # float32 inputs are written as the shortest text that reads back as the same float32.
    value = np.float32(5.1)
    assert float(value) != 5.1
    assert orjson.dumps({"x": value}, option=LINE_OPTIONS) == b'{"x":5.1}\n'


def test_cloudevents_requests_carry_each_lines_fields():
    import http.client
    import io

    from app.predlog.cloudevents import Target, requests_of

    target = Target("https://events.example:8443/in?x=1")
    lines_in = [
        {
            "request_id": f"rid-{model}",
            "time": f"2026-01-0{version}T00:00:00Z",
            "model": model,
            "version": version,
            "inputs": {"f": [np.float32(0.5)]},
            "answer": {"predictions": [label]},
            "status": status,
            "error": None,
        }
        for model, version, label, status in [("wine", 3, 1, 200), ("digits", 1, 7, 200)] * 2
    ]
    for line in lines_in:
        events = requests_of(line, target)
        for kind, raw, body in zip(
            ("request", "response"),
            events,
            ({"inputs": {"f": [0.5]}}, {"predictions": [line["answer"]["predictions"][0]]}),
            strict=True,
        ):
            head, _, payload = raw.partition(b"\r\n\r\n")
            start, _, fields = head.partition(b"\r\n")
            headers = http.client.parse_headers(io.BytesIO(fields + b"\r\n\r\n"))
            assert start == b"POST /in?x=1 HTTP/1.1"
            assert dict(headers) == {
                "host": "events.example:8443",
                "ce-specversion": "1.0",
                "ce-type": f"org.kubeflow.serving.inference.{kind}",
                "ce-id": line["request_id"],
                "ce-source": f"/models/{line['model']}/versions/{line['version']}",
                "ce-time": line["time"],
                "ce-inferenceservicename": line["model"],
                "ce-modelversion": str(line["version"]),
                "ce-component": "predictor",
                "content-type": "application/json",
                "content-length": str(len(payload)),
            }
            extra = {"model_name": line["model"], "model_version": str(line["version"])}
            if kind == "response":
                body = {**body, **extra, "status": line["status"], "error": None}
            assert json.loads(payload) == body


def test_the_cloudevents_client_counts_refusals_and_keeps_its_connection():
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from app.predlog.cloudevents import CloudEventsSink, Target

    statuses = iter([202, 500, 200, 200])
    received: list[tuple[str, bytes]] = []
    connections: set[int] = set()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((self.headers["ce-type"], body))
            connections.add(self.client_address[1])
            self.send_response(next(statuses))
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/in"
        sink = CloudEventsSink(Target(url), queue_rows=10, timeout_s=2.0)
        request = b"POST /in HTTP/1.1\r\nhost: x\r\nce-type: %s\r\ncontent-length: 2\r\n\r\n{}"
        pair = (request % b"req", request % b"resp")
        sink.write([pair, pair], 2)
        sink.close()
    finally:
        server.shutdown()
        server.server_close()
    # The first event's response event was refused (500): failed, and the connection opened
    # afresh for the second, which was written whole.
    assert (sink.written, sink.failed) == (1, 1)
    assert [kind for kind, _ in received] == ["req", "resp", "req", "resp"]
    assert len(connections) == 2


def test_a_models_share_follows_its_model_toml_without_a_reload_of_the_model(
    serve, store, tmp_path
):
    folder = tmp_path / "log"
    toml = store / "shapes" / "model.toml"
    toml.write_text("[prediction_log]\npercent = 0\n")
    auth = {"Authorization": "Bearer t0ken"}
    with serve(store, prediction_log_dir=folder, admin_token="t0ken") as client:
        for _ in range(5):
            assert client.post("/predict", json={"model": "shapes", "features": ROWS[0]}).is_success
        toml.write_text("[prediction_log]\npercent = 100\n")
        report = client.post("/admin/reload", headers=auth).json()
        assert report["loaded"] == []  # the session stays: only the log's share changed
        answer = client.post("/predict", json={"model": "shapes", "features": ROWS[0]})
        (line,) = lines(folder, 1)
    assert line["request_id"] == answer.headers["x-request-id"]


@pytest.mark.parametrize(
    ("percent", "key_header", "configs", "kept"),
    [
        # Past the settings' share: drawn out before anything of the request is noted.
        (10.0, None, {}, [5.0, 9.99, None, None]),
        # A model's own larger share raises the ceiling for every request.
        (10.0, None, {"m": PredictionLogConfig(percent=50)}, [5.0, 9.99, 10.0, None]),
        (0.0, None, {"m": PredictionLogConfig(percent=10)}, [5.0, 9.99, None, None]),
        # A share decided by a key header: no request is drawn out (its key decides).
        (10.0, None, {"m": PredictionLogConfig(key_header="x-user")}, [5.0, 9.99, 10.0, 99.0]),
        (10.0, "x-user", {}, [5.0, 9.99, 10.0, 99.0]),
        # Every request kept: every draw is in (0, with no random number made).
        (100.0, None, {"m": PredictionLogConfig(percent=100)}, [0.0, 0.0, 0.0, 0.0]),
        (100.0, None, {"m": PredictionLogConfig(percent=50)}, [5.0, 9.99, 10.0, 99.0]),
    ],
)
def test_a_request_past_every_models_share_is_drawn_out_when_it_comes(
    tmp_path, monkeypatch, percent, key_header, configs, kept
):
    settings = Settings(
        _env_file=None,
        prediction_log_dir=tmp_path,
        prediction_log_percent=percent,
        prediction_log_key_header=key_header,
    )
    log = PredictionLog.configured(settings, Metrics(), lambda: configs)
    assert log is not None
    draws = iter([0.05, 0.0999, 0.1, 0.99] * 2)
    monkeypatch.setattr(random, "random", lambda: next(draws))
    # Before the store's first sync no share is known: nothing is drawn out.
    assert [log.draw() for _ in range(4)] == [5.0, 9.99, 10.0, 99.0]
    log.read_shares()
    assert [log.draw() for _ in range(4)] == kept


def test_a_share_raised_in_model_toml_past_the_settings_is_logged_after_a_reload(
    serve, store, tmp_path
):
    folder = tmp_path / "log"
    auth = {"Authorization": "Bearer t0ken"}
    with serve(
        store, prediction_log_dir=folder, prediction_log_percent=0, admin_token="t0ken"
    ) as client:
        for _ in range(5):  # past the share of every model: none is kept
            assert client.post("/predict", json={"model": "shapes", "features": ROWS[0]}).is_success
        (store / "shapes" / "model.toml").write_text("[prediction_log]\npercent = 100\n")
        assert client.post("/admin/reload", headers=auth).is_success
        answers = [
            client.post("/predict", json={"model": "shapes", "features": row}) for row in ROWS
        ]
        found = lines(folder, len(ROWS))
    assert [line["request_id"] for line in found] == [a.headers["x-request-id"] for a in answers]


@pytest.mark.parametrize(
    "matrix",
    [
        np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32),
        np.array([[1.0, np.nan, -0.0], [np.inf, 2.5e-8, 3e38]], dtype=np.float64),
        np.arange(12, dtype=np.int64).reshape(4, 3) - 6,
        np.array([[True, False, True]]),
        np.zeros((0, 3), dtype=np.float32),
        np.array([[7.0], [8.0]], dtype=np.float32),
    ],
    ids=["one-row-float32", "nan-inf-float64", "int64", "bool", "no-rows", "one-feature"],
)
def test_numeric_inputs_read_as_one_array_per_feature(matrix):
    """The inputs' JSON, written from the whole matrix at once, reads as orjson writes each
    column on its own, under names that JSON and %-formatting must both escape."""
    names = ('a "quoted" name', "100% sure", "naïve\\path")[: matrix.shape[1]]
    names = names + tuple(f"x{i}" for i in range(matrix.shape[1] - len(names)))
    written = orjson.dumps({"inputs": _numeric_columns(names, matrix)})
    columns = {n: np.ascontiguousarray(matrix[:, i]) for i, n in enumerate(names)}
    expected = orjson.dumps({"inputs": columns}, option=orjson.OPT_SERIALIZE_NUMPY)
    assert written == expected
    assert list(json.loads(written)["inputs"]) == list(names)
