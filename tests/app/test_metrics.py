"""GET /metrics: Prometheus text with exact counts for known traffic, and bounded label values."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from onnx_factories import iris_rows, write_garbage, write_iris_classifier, write_model_toml
from prometheus_client.parser import text_string_to_metric_families

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
ADMIN = {"Authorization": "Bearer metrics-token"}

Samples = list[tuple[str, dict[str, str], float]]


def parse(text: str) -> Samples:
    """Every sample of a scrape as (sample name, labels, value)."""
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def scrape(client: Any) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return parse(response.text)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    return sum(
        value
        for sample, found, value in samples
        if sample == name and all(found.get(k) == v for k, v in labels.items())
    )


def matching(samples: Samples, name: str, **labels: str) -> list[float]:
    """The values of the samples called `name` whose labels include `labels`."""
    return [
        value
        for sample, found, value in samples
        if sample == name and all(found.get(k) == v for k, v in labels.items())
    ]


@pytest.fixture(scope="module")
def traffic(serve, demo_store: Path) -> Iterator[Any]:
    """An app of its own (so counts are exact) after a known set of requests."""
    with serve(demo_store) as client:
        for body in (
            {"model": "iris", "version": 2, "features": IRIS_ROW},
            {"model": "iris", "features": IRIS_ROW},
            {"model": "iris", "features": IRIS_ROW},
            {"model": "iris", "version": 1, "features": IRIS_ROW},
        ):
            assert client.post("/predict", json=body).status_code == 200
        # Two 422s (after and before the model is resolved) and a 404 for an unknown model.
        assert (
            client.post("/predict", json={"model": "iris", "features": [1, 2, 3]}).status_code
            == 422
        )
        assert client.post("/predict", json={"model": "iris"}).status_code == 422
        assert (
            client.post("/predict", json={"model": "nope", "features": IRIS_ROW}).status_code == 404
        )
        # 64 rows land in the 64 bucket; 65 rows go above it.
        batch64 = {"model": "iris", "version": 2, "instances": [IRIS_ROW] * 64}
        batch65 = {"model": "iris", "version": 1, "instances": [IRIS_ROW] * 65}
        assert client.post("/predict/batch", json=batch64).status_code == 200
        assert client.post("/predict/batch", json=batch65).status_code == 200
        assert client.get("/models/iris").status_code == 200
        assert client.get("/models/nope").status_code == 404
        assert client.get("/nope/whatever").status_code == 404
        yield client


def test_prometheus_text_content_type(traffic):
    response = traffic.get("/metrics")

    assert response.status_code == 200
    content_type = response.headers["content-type"]
    assert content_type.startswith("text/plain"), content_type
    assert "version=0.0.4" in content_type, content_type
    assert parse(response.text)  # parses as Prometheus text


def test_requests_counted_by_route_model_version_status(traffic):
    samples = scrape(traffic)
    name = "model_server_requests_total"

    predict = {
        (s["model"], s["version"], s["status"]): v
        for n, s, v in samples
        if n == name and s["route"] == "/predict"
    }
    assert predict == {
        ("iris", "2", "200"): 3,
        ("iris", "1", "200"): 1,
        ("", "", "422"): 2,
        ("", "", "404"): 1,
    }
    batch = {
        (s["model"], s["version"], s["status"]): v
        for n, s, v in samples
        if n == name and s["route"] == "/predict/batch"
    }
    assert batch == {("iris", "2", "200"): 1, ("iris", "1", "200"): 1}
    assert total(samples, name, route="/models/{name}", status="200") == 1
    assert total(samples, name, route="/models/{name}", status="404") == 1
    assert total(samples, name, status="404") == 3  # /predict, /models/{name}, the unknown path


def test_request_duration_counted_per_route(traffic):
    samples = scrape(traffic)
    name = "model_server_request_duration_seconds_count"

    assert total(samples, name, route="/predict") == 7
    assert total(samples, name, route="/predict", model="iris") == 4
    assert total(samples, name, route="/predict/batch") == 2
    assert total(samples, name, route="/models/{name}") == 2
    assert total(samples, "model_server_request_duration_seconds_sum", route="/predict") > 0
    inf = total(
        samples, "model_server_request_duration_seconds_bucket", route="/predict", le="+Inf"
    )
    assert inf == 7


def test_inference_duration_per_session_run(traffic):
    samples = scrape(traffic)
    name = "model_server_inference_duration_seconds"

    # Three single rows and one batch on version 2; one row and one batch on version 1.
    assert total(samples, name + "_count", model="iris", version="2") == 4
    assert total(samples, name + "_count", model="iris", version="1") == 2
    assert total(samples, name + "_sum", model="iris", version="2") > 0


def test_batch_size_buckets(traffic):
    samples = scrape(traffic)
    bucket = "model_server_batch_size_bucket"

    v2 = {"model": "iris", "version": "2"}
    assert total(samples, bucket, le="1.0", **v2) == 3
    assert total(samples, bucket, le="32.0", **v2) == 3
    assert total(samples, bucket, le="64.0", **v2) == 4  # the 64-row batch, in the 64 bucket
    assert total(samples, "model_server_batch_size_count", **v2) == 4
    assert total(samples, "model_server_batch_size_sum", **v2) == 3 + 64
    v1 = {"model": "iris", "version": "1"}
    assert total(samples, bucket, le="64.0", **v1) == 1  # 65 rows are above 64
    assert total(samples, bucket, le="128.0", **v1) == 2
    assert total(samples, "model_server_batch_size_sum", **v1) == 1 + 65


def test_loaded_versions(traffic):
    samples = scrape(traffic)

    assert matching(samples, "model_server_loaded_versions", model="iris") == [2]
    assert matching(samples, "model_server_loaded_versions", model="diabetes") == [1]
    assert matching(samples, "model_server_loaded_versions", model="diabetes_pipeline") == [1]


def test_no_label_value_comes_from_what_a_client_typed(traffic):
    samples = scrape(traffic)

    values = {value for _, labels, _ in samples for value in labels.values()}
    assert not [v for v in values if "nope" in v or "whatever" in v], values
    models = {labels["model"] for _, labels, _ in samples if "model" in labels}
    assert models <= {"", "iris", "diabetes", "diabetes_pipeline"}, models


def test_load_failures_counted(serve, tmp_path):
    store = tmp_path / "store"
    write_iris_classifier(store / "good" / "1")
    write_garbage(store / "broken" / "1")

    with serve(store, admin_token="metrics-token") as client:
        before = scrape(client)
        write_garbage(store / "good" / "2")
        reload = client.post("/admin/reload", headers=ADMIN)
        after = scrape(client)
        predict = client.post("/predict", json={"model": "good", "features": IRIS_ROW})

    failures = "model_server_model_load_failures_total"
    assert total(before, failures, model="broken") == 1  # at start-up
    assert total(before, failures, model="good") == 0
    assert reload.status_code == 200, reload.text
    assert [(f["model"], f["version"]) for f in reload.json()["failed"]] == [("good", 2)]
    assert total(after, failures, model="good") == 1
    assert total(after, failures, model="broken") == 1
    assert matching(after, "model_server_loaded_versions", model="good") == [1]
    assert predict.status_code == 200 and predict.json()["version"] == 1


def test_batch_queue_depth_reported_and_back_to_zero(serve, tmp_path):
    store = tmp_path / "store"
    write_iris_classifier(store / "queued" / "1")
    write_model_toml(store / "queued", "[batching]\nmax_batch_size = 8\nmax_delay_ms = 20\n")
    rows = iris_rows(24)

    with serve(store) as client:
        metrics = client.app.runtime.metrics
        depths: list[int] = []
        reported = metrics.queued

        def record(model: str, version: int, depth: int) -> None:
            depths.append(depth)
            reported(model, version, depth)

        metrics.queued = record
        try:

            def predict(row: list[float]) -> int:
                body = {"model": "queued", "features": row}
                return client.post("/predict", json=body).status_code

            with ThreadPoolExecutor(12) as pool:
                statuses = list(pool.map(predict, rows))
        finally:
            del metrics.queued
        samples = scrape(client)

    assert statuses == [200] * len(rows)
    assert max(depths) >= 1 and depths[-1] == 0, depths
    depth = matching(samples, "model_server_batch_queue_depth", model="queued", version="1")
    assert depth == [0]
    # Every row ran exactly once, whichever runs they were coalesced into.
    assert total(samples, "model_server_batch_size_sum", model="queued", version="1") == 24
