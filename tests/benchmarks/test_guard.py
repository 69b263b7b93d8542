import tomllib

import httpx

from benchmarks.guard import BUDGETS, broken_budgets, guard_streams
from loadtest.stats import StepStats


def stats(route: str, p50: float, p95: float, p99: float, failures: int = 0) -> StepStats:
    percentiles = {50: p50, 90: p95, 95: p95, 99: p99}
    return StepStats(1000, 1000 - failures, 0, failures, 100.0, percentiles, p99)


ROUTES = {
    "/predict": {"max_failures": 0, "p99_ms": 20.0, "p50_ratio": 2.0, "p99_ratio": 3.0},
    "/health/live": {"max_failures": 0, "p99_ms": 20.0},
}


def test_a_run_within_budget_breaks_nothing():
    run = {
        "/predict": stats("/predict", 1.0, 2.0, 4.0),
        "/health/live": stats("/health/live", 1.0, 2.0, 3.0),
    }
    assert broken_budgets(run, ROUTES, "/health/live") == []


def test_each_broken_budget_is_named():
    run = {
        "/predict": stats("/predict", 2.5, 2.0, 25.0, failures=3),
        "/health/live": stats("/health/live", 1.0, 2.0, 5.0),
    }
    broken = broken_budgets(run, ROUTES, "/health/live")
    assert any("/predict: 3 failed requests" in line for line in broken)
    assert any("/predict: p99 25.00 ms > ceiling 20.0 ms" in line for line in broken)
    assert any("/predict: p99 is 5.00x the floor" in line for line in broken)
    assert any("/predict: p50 is 2.50x the floor" in line for line in broken)
    assert len(broken) == 4


def test_a_slow_machine_moves_floor_and_route_together_and_passes_the_ratios():
    routes = {"/predict": {"p99_ratio": 3.0}}
    run = {
        "/predict": stats("/predict", 8, 16, 30),
        "/health/live": stats("/health/live", 4, 8, 15),
    }
    assert broken_budgets(run, routes, "/health/live") == []


def test_a_route_with_no_measurement_is_broken():
    assert broken_budgets({}, {"/predict": {}}, "/health/live") == [
        "/predict: no successful request was measured"
    ]


def test_the_budgets_file_covers_both_predict_routes_and_the_floor():
    config = tomllib.loads(BUDGETS.read_text())
    assert config["load"]["floor"] in config["routes"]
    for route in ("/predict", "/predict/batch"):
        budget = config["routes"][route]
        assert budget["max_failures"] == 0
        assert {f"p{p}_ms" for p in (50, 95, 99)} <= budget.keys()
        assert {f"p{p}_ratio" for p in (50, 95, 99)} <= budget.keys()


def test_the_guard_sends_every_route_its_budgets_name_and_each_answers_200(served, store):
    """The guard's requests are the load test's, built from the model's description."""
    config = tomllib.loads(BUDGETS.read_text())
    with httpx.Client(base_url=served.url, timeout=10.0) as client:
        streams = guard_streams(client, config["load"]["model"], store)
        assert {s.name for s in streams} == set(config["routes"])
        for stream in streams:
            body, headers = stream.request(0)
            response = client.request(stream.method, stream.path, content=body, headers=headers)
            assert response.status_code == 200, (stream.name, response.text)
