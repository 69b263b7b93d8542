"""Locust users for the release load test and the latency guard.

    locust -f benchmarks/locustfile.py --host http://127.0.0.1:8000

Each user class hits one route at a fixed rate per user (RATE_PER_USER, default 50 req/s), so
latency is measured at a known load rather than at saturation. Every response time is also
kept at full precision (Locust's own percentiles round to whole milliseconds, coarser than our
sub-millisecond latencies) and written as JSON to LATENCY_DUMP when the run ends.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

from locust import FastHttpUser, constant_throughput, events, task

from benchmarks.bodies import BATCH, SINGLE

RATE_PER_USER = float(os.environ.get("RATE_PER_USER", "50"))
JSON_HEADERS = {"Content-Type": "application/json"}

samples: dict[str, list[float]] = defaultdict(list)
failures: dict[str, int] = defaultdict(int)


@events.request.add_listener
def _record(name: str, response_time: float, exception: Any, **_: Any) -> None:
    if exception is None:
        samples[name].append(response_time)
    else:
        failures[name] += 1


@events.test_stop.add_listener
def _dump(**_: Any) -> None:
    path = os.environ.get("LATENCY_DUMP")
    if path:
        with open(path, "w") as out:
            json.dump({"samples": samples, "failures": failures}, out)


class SinglePredictUser(FastHttpUser):
    """One iris row per request."""

    wait_time = constant_throughput(RATE_PER_USER)

    @task
    def predict(self) -> None:
        self.client.post("/predict", data=SINGLE, headers=JSON_HEADERS, name="/predict")


class BatchPredictUser(FastHttpUser):
    """64 iris rows per request."""

    wait_time = constant_throughput(RATE_PER_USER)

    @task
    def predict_batch(self) -> None:
        self.client.post("/predict/batch", data=BATCH, headers=JSON_HEADERS, name="/predict/batch")


class FloorUser(FastHttpUser):
    """The cheapest route, measured in the same run: the floor the others are compared with."""

    wait_time = constant_throughput(RATE_PER_USER)

    @task
    def live(self) -> None:
        self.client.get("/health/live", name="/health/live")
