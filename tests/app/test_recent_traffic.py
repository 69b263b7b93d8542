"""app.recent: the last minute of each version's traffic, read from the metrics tallies at each
flush, added up over workers through their files."""

from __future__ import annotations

import math
import os

import pytest

from app.metrics import LATENCY_BUCKETS, Metrics
from app.recent import RecentTraffic, quantile

BOUNDS = (*LATENCY_BUCKETS, math.inf)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fed(recent: RecentTraffic) -> Metrics:
    metrics = Metrics()
    metrics.on_flush(recent.take)
    return metrics


def test_quantiles_interpolate_inside_the_bucket_as_prometheus_does():
    counts = [0] * len(BOUNDS)
    counts[BOUNDS.index(0.001)] = 50  # (0.0005, 0.001]
    counts[BOUNDS.index(0.002)] = 50  # (0.001, 0.002]
    assert quantile(0.5, counts, BOUNDS) == pytest.approx(0.001)
    assert quantile(0.75, counts, BOUNDS) == pytest.approx(0.0015)
    assert quantile(0.99, counts, BOUNDS) == pytest.approx(0.001 + 0.001 * 49 / 50)
    assert quantile(0.5, [0] * len(BOUNDS), BOUNDS) is None
    beyond = [0] * len(BOUNDS)
    beyond[-1] = 3  # only past the last finite bound: that bound, as histogram_quantile says
    assert quantile(0.99, beyond, BOUNDS) == LATENCY_BUCKETS[-1]


def test_answers_count_per_version_once_and_errors_from_status_400():
    clock = Clock()
    recent = RecentTraffic(clock=clock)
    metrics = fed(recent)
    for _ in range(3):
        metrics.answered("/predict", "iris", "2", 200, 0.0008)
    metrics.answered("/predict/batch", "iris", "2", 503, 0.004)
    metrics.answered("/predict", "iris", "", 422, 0.0002)  # never resolved to a version
    metrics.flush()
    metrics.flush()  # an empty flush adds nothing

    (key,) = recent.own()
    assert key == ("iris", "2")
    shown = recent.summary([recent.own()])[key]
    assert shown["requests"] == 4
    assert shown["errors"] == 1
    assert shown["rate_per_s"] == pytest.approx(4 / 60, abs=1e-3)
    assert 0.5 <= shown["p50_ms"] <= 1.0
    assert 3.0 <= shown["p99_ms"] <= 5.0
    assert [step["requests"] for step in shown["series"]] == [0] * 11 + [4]


def test_seconds_fall_into_their_chart_step_and_out_of_the_window():
    clock = Clock()
    recent = RecentTraffic(clock=clock)
    metrics = fed(recent)
    metrics.answered("/predict", "m", "1", 200, 0.001)
    metrics.flush()
    clock.now += 30
    metrics.answered("/predict", "m", "1", 200, 0.001)
    metrics.answered("/predict", "m", "1", 200, 0.001)
    metrics.flush()

    series = recent.summary([recent.own()])[("m", "1")]["series"]
    assert [step["requests"] for step in series] == [0] * 5 + [1] + [0] * 5 + [2]
    assert series[0]["p50_ms"] is None

    clock.now += 31  # the first answer is now 61 s old, the others 31 s
    metrics.flush()
    assert recent.summary([recent.own()])[("m", "1")]["requests"] == 2
    clock.now += 30
    metrics.flush()
    assert recent.own() == {}
    assert recent.summary([recent.own()]) == {}


def test_workers_add_up_through_the_shared_folder(tmp_path):
    clock = Clock()
    one = RecentTraffic(str(tmp_path), clock=clock, pid=101)
    two = RecentTraffic(str(tmp_path), clock=clock, pid=102)
    quiet = RecentTraffic(str(tmp_path), clock=clock, pid=103)
    for recent, answers in ((one, 3), (two, 5)):
        metrics = fed(recent)
        for _ in range(answers):
            metrics.answered("/predict", "iris", "2", 200, 0.001)
        metrics.flush()
    fed(quiet).flush()

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ui-recent-101.json",
        "ui-recent-102.json",
    ]
    others = one.others()
    assert len(others) == 1  # its own slots are read from memory, not from its file
    assert one.summary([one.own(), *others])[("iris", "2")]["requests"] == 8

    # A worker whose file has not changed for a minute (idle, or gone) is not read.
    old = clock.now - 61
    os.utime(tmp_path / "ui-recent-102.json", (old, old))
    assert one.others() == []
