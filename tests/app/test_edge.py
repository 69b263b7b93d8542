"""Request ids on every answer, the access log record, and the request timeout (app.edge)."""

from __future__ import annotations

import asyncio
import logging
import re
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.exceptions import StarletteDeprecationWarning

from app.config import Settings
from app.edge import Edge
from app.logs import ACCESS_LOGGER
from app.metrics import Metrics
from app.runtime import Runtime

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
JSON = {"content-type": "application/json"}

# (method, path, keyword arguments, expected status): the fast path, FastAPI routes, errors.
REQUESTS = [
    ("POST", "/predict", {"json": {"model": "iris", "features": IRIS_ROW}}, 200),
    ("POST", "/predict/batch", {"json": {"model": "iris", "instances": [IRIS_ROW]}}, 200),
    ("POST", "/predict", {"json": {"model": "iris", "features": [1, 2]}}, 422),
    ("POST", "/predict", {"json": {"model": "nope", "features": IRIS_ROW}}, 404),
    ("POST", "/predict", {"content": b"{broken", "headers": JSON}, 400),
    ("POST", "/predict", {"content": b"a=1", "headers": {"content-type": "text/plain"}}, 415),
    ("GET", "/models", {}, 200),
    ("GET", "/models/iris", {}, 200),
    ("GET", "/models/nope", {}, 404),
    ("GET", "/health/live", {}, 200),
    ("GET", "/metrics", {}, 200),
    ("GET", "/no/such/path", {}, 404),
    ("GET", "/predict", {}, 405),
]
REQUEST_IDS = [f"{m} {p} {s}" for m, p, _, s in REQUESTS]


def call(client: Any, method: str, path: str, options: dict[str, Any], **headers: str) -> Any:
    options = {**options, "headers": {**options.get("headers", {}), **headers}}
    return client.request(method, path, **options)


@pytest.mark.parametrize(("method", "path", "options", "status"), REQUESTS, ids=REQUEST_IDS)
def test_given_id_is_echoed(client, method, path, options, status):
    response = call(client, method, path, options, **{"X-Request-ID": "abc-123.de_f:9"})

    assert response.status_code == status, response.text
    assert response.headers.get_list("x-request-id") == ["abc-123.de_f:9"]


@pytest.mark.parametrize(("method", "path", "options", "status"), REQUESTS, ids=REQUEST_IDS)
def test_id_generated_when_absent(client, method, path, options, status):
    response = call(client, method, path, options)

    assert response.status_code == status, response.text
    ids = response.headers.get_list("x-request-id")
    assert len(ids) == 1 and VALID_ID.match(ids[0]), ids


def test_generated_ids_are_unique(client):
    ids = [client.get("/health/live").headers["x-request-id"] for _ in range(50)]
    ids += [
        client.post("/predict", json={"model": "iris", "features": IRIS_ROW}).headers[
            "x-request-id"
        ]
        for _ in range(50)
    ]

    assert len(set(ids)) == 100
    assert all(VALID_ID.match(i) for i in ids), ids


@pytest.mark.parametrize(
    "given",
    ["has spaces in it", "x" * 300, "semi;colon", 'quote"d', "slash/ed", ""],
    ids=["spaces", "300-chars", "semicolon", "quote", "slash", "empty"],
)
@pytest.mark.parametrize("path", ["/predict", "/models"])
def test_invalid_id_is_replaced(client, given, path):
    if path == "/predict":
        response = client.post(
            path, json={"model": "iris", "features": IRIS_ROW}, headers={"X-Request-ID": given}
        )
    else:
        response = client.get(path, headers={"X-Request-ID": given})

    assert response.status_code == 200
    ids = response.headers.get_list("x-request-id")
    assert len(ids) == 1, ids
    assert ids[0] != given
    assert VALID_ID.match(ids[0]), ids


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def access_records() -> Iterator[list[logging.LogRecord]]:
    handler = Records()
    logger = logging.getLogger(ACCESS_LOGGER)
    # An embedded app leaves logging to its host (app.runtime): here, the host is this test.
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_access_log_record_carries_the_request(client, access_records):
    response = client.post("/predict", json={"model": "iris", "version": 1, "features": IRIS_ROW})
    failed = client.get("/models/nope", headers={"X-Request-ID": "lookup-1"})

    assert response.status_code == 200
    assert failed.status_code == 404
    by_id = {vars(r)["request_id"]: vars(r) for r in access_records}
    record = by_id[response.headers["x-request-id"]]
    assert record["method"] == "POST"
    assert record["path"] == record["route"] == "/predict"
    assert record["status"] == 200
    assert (record["model"], str(record["version"])) == ("iris", "1")
    assert isinstance(record["duration_ms"], float) and record["duration_ms"] >= 0
    missing = by_id["lookup-1"]
    assert (missing["path"], missing["route"]) == ("/models/nope", "/models/{name}")
    assert (missing["status"], missing["model"], missing["version"]) == (404, None, None)


def test_access_log_off(serve, demo_store, access_records):
    with serve(demo_store, access_log=False) as client:
        response = client.post("/predict", json={"model": "iris", "features": IRIS_ROW})

    assert response.status_code == 200
    assert access_records == []


# -- the request timeout, around an app that never answers in time ----------------------------


async def _slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await asyncio.sleep(5)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"late"})


def _counts(metrics: Metrics) -> dict[tuple[str, str], float]:
    text = metrics.exposition()[0].decode()
    return {
        (s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "model_server_requests_total"
    }


def _edge_over(app: Any) -> Edge:
    """The edge in front of `app`, with a 0.2 s request timeout and no access log."""
    settings = Settings(_env_file=None, request_timeout_s=0.2, access_log=False)  # type: ignore[call-arg]
    return Edge(app, Runtime(settings))


def test_timeout_answers_504_problem():
    app = _edge_over(_slow_app)
    metrics = app.metrics
    client = TestClient(app, raise_server_exceptions=False)

    response = client.get("/anything", headers={"X-Request-ID": "slow-1"})

    assert response.status_code == 504
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == 504
    assert "REQUEST_TIMEOUT_S" in body["detail"]
    assert response.headers["x-request-id"] == "slow-1"
    assert _counts(metrics) == {("unmatched", "504"): 1}


def test_timeout_on_the_v2_protocol_answers_its_json_error():
    app = _edge_over(_slow_app)
    client = TestClient(app, raise_server_exceptions=False)

    response = client.get("/v2/models/iris")  # a /v2 route of the FastAPI app

    assert response.status_code == 504
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error"}
    assert "x-request-id" in response.headers
