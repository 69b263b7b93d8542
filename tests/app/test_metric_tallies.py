"""app.metrics: requests and runs recorded into tallies, moved into prometheus-client by flush()."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import BATCH_BUCKETS, LATENCY_BUCKETS, Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition (which flushes first), by name and sorted labels."""
    text = metrics.exposition()[0].decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, tuple(sorted(labels.items())))]


def test_answers_are_counted_once_however_often_flushed() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.answered("/predict", "iris", "2", 200, 0.0012)
    metrics.answered("/predict", "iris", "2", 422, 0.0004)

    metrics.flush()
    metrics.flush()

    requests = "model_server_requests_total"
    labels = {"route": "/predict", "model": "iris", "version": "2"}
    assert value(metrics, requests, status="200", **labels) == 3
    assert value(metrics, requests, status="422", **labels) == 1
    latency = "model_server_request_duration_seconds"
    assert value(metrics, latency + "_count", route="/predict", model="iris") == 4
    assert value(metrics, latency + "_sum", route="/predict", model="iris") == pytest.approx(
        3 * 0.0012 + 0.0004
    )


@pytest.mark.parametrize("rows", [1, 3, 64, 65, 10_000, 10_001])
def test_a_value_on_a_bound_falls_in_that_bucket_as_prometheus_places_it(rows: int) -> None:
    ours, reference = Metrics(), Metrics()
    ours.ran("m", 1, rows, 1e-5)
    reference.batch_size.labels("m", "1").observe(rows)  # prometheus-client's own placement

    bucket = "model_server_batch_size_bucket"
    for bound in [*BATCH_BUCKETS, "+Inf"]:
        le = bound if bound == "+Inf" else f"{float(bound)}"
        assert value(ours, bucket, model="m", version="1", le=le) == value(
            reference, bucket, model="m", version="1", le=le
        ), le


def test_latencies_fill_the_same_buckets_as_prometheus_observe() -> None:
    ours, reference = Metrics(), Metrics()
    durations = [0.0001, 0.0005, 0.0007, 0.001, 0.02, 2.5, 31.0, *LATENCY_BUCKETS]
    for seconds in durations:
        ours.answered("/predict", "iris", "2", 200, seconds)
        reference.latency.labels("/predict", "iris").observe(seconds)

    name = "model_server_request_duration_seconds_bucket"
    ours_buckets = {k: v for k, v in samples(ours).items() if k[0] == name}
    assert ours_buckets == {k: v for k, v in samples(reference).items() if k[0] == name}
    assert len(ours_buckets) == len(LATENCY_BUCKETS) + 1


def test_flushing_moves_tallies_in_the_background_and_at_the_end() -> None:
    metrics = Metrics()
    before: list[float] = []

    def count() -> float:
        # Read the prometheus-client counter itself: exposition() would flush first.
        return metrics.requests.labels("/predict", "iris", "2", "200")._value.get()

    async def scenario() -> None:
        async with metrics.flushing(interval_s=0.05):
            metrics.answered("/predict", "iris", "2", 200, 0.001)
            before.append(count())
            await asyncio.sleep(0.2)
            assert count() == 1  # flushed by the background task
            metrics.answered("/predict", "iris", "2", 200, 0.001)
        assert count() == 2  # flushed as the block ended

    asyncio.run(scenario())
    assert before == [0]
