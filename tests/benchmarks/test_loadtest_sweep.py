"""The sweep through real Locust processes against a real server: short steps, counts only."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from live_server import LiveServer

from loadtest.engine import LOCUSTFILE, StepLoad, run_step
from loadtest.payloads import JSON, Route, Stream, model_stream
from loadtest.rows import describe, generate_rows
from loadtest.sweep import SweepPlan, ToolBug, measure_ceiling, run_sweep


def iris_stream(server: LiveServer, version: int | None = None) -> Stream:
    with httpx.Client(base_url=server.url) as client:
        inputs = describe(client, "iris", version)
    rows = generate_rows(inputs, 32)
    return model_stream(inputs, rows, Route.PREDICT, 1, True, name=f"iris v{inputs.version}")


def test_the_sweep_stops_at_the_first_level_past_its_p99_budget(served: LiveServer):
    plan = SweepPlan(levels=(1, 2, 4), seconds=1, stop_p99_ms=0.001)
    result = run_sweep(served.url, [iris_stream(served)], plan)
    assert [s.level for s in result.steps] == [1]
    assert result.stop_reason.startswith("p99 ")
    assert "passed its budget of 0.001 ms at 1 users" in result.stop_reason
    step = result.steps[0]
    assert step.stats.requests > 0
    assert step.stats.ok == step.stats.requests
    # The generator's ceiling is measured at the load where the candidate peaked, 8 users at least.
    assert result.ceiling is not None
    assert result.ceiling.load.users == 8
    assert result.ceiling.stats.ok > 0


def test_open_loop_sends_no_more_than_the_offered_rate(served: LiveServer):
    plan = SweepPlan(levels=(40,), seconds=1, open_loop=True, pool=4)
    result = run_sweep(served.url, [iris_stream(served)], plan)
    step = result.steps[0]
    assert step.load.users == 4
    assert step.load.user_rate == pytest.approx(10.0)
    offered = 40 * step.requests.window_s
    # Each user keeps its own schedule: at most one request a user beyond the offered count.
    assert 0 < step.stats.requests <= offered + plan.pool
    assert step.stats.ok == step.stats.requests


def test_a_request_the_server_refuses_ends_the_run_as_a_bug_of_the_tool(served: LiveServer):
    wrong = Stream("iris wrong", "POST", "/predict", JSON, (b'{"model":"iris","features":[1]}',))
    with pytest.raises(ToolBug, match=r"bug of the load-test tool.*422"):
        run_sweep(served.url, [wrong], SweepPlan(levels=(1, 2), seconds=1))


def test_the_generator_ceiling_is_measured_with_every_worker_process(served: LiveServer):
    """The candidate's own requests, sent to a server that answers at once: every one of them
    answered (that server refuses nothing), by both Locust worker processes."""
    plan = SweepPlan(levels=(4,), seconds=1, processes=2)
    ceiling = measure_ceiling(iris_stream(served), plan, users=4)
    assert ceiling.version == "generator ceiling (iris v2 requests)"
    assert ceiling.load.processes == 2
    assert ceiling.requests.processes == 2  # both workers recorded their requests
    assert ceiling.stats.ok == ceiling.stats.requests > 0


def test_several_streams_share_one_run_and_are_reported_apart(served: LiveServer):
    streams = [iris_stream(served, 1), iris_stream(served, 2)]
    measured = run_step(served.url, streams, StepLoad(users=2, seconds=1))
    assert set(measured) == {"iris v1", "iris v2"}
    for requests in measured.values():
        assert requests.status.size > 0
        assert set(requests.status.tolist()) == {200}


def test_the_locustfile_builds_its_requests_from_the_environment_for_the_web_ui(
    served: LiveServer, tmp_path
):
    """Without a streams file (Locust's own command line or web UI), the locustfile asks the
    server about LOADTEST_MODEL itself."""
    env = {
        **os.environ,
        "LOADTEST_MODEL": "churn-risk",
        "LOADTEST_ROUTE": "batch",
        "LOADTEST_BATCH_ROWS": "5",
        "LOADTEST_RECORD_DIR": str(tmp_path),
    }
    env.pop("LOADTEST_STREAMS", None)
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host",
        served.url, "-u", "1", "-r", "1", "-t", "2s", "--only-summary",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    [record_file] = tmp_path.glob("*.json")
    record = json.loads(record_file.read_text())
    assert record["streams"] == ["churn-risk v1 batch"]
    assert record["status"]
    assert set(record["status"]) == {200}


def test_throughput_pacing_keeps_each_user_under_its_rate(served: LiveServer):
    """The latency guard's pacing (Locust's constant_throughput): at most the rate per user."""
    load = StepLoad(users=2, seconds=1, user_rate=20, pacing="throughput")
    [requests] = run_step(served.url, [iris_stream(served)], load).values()
    assert 0 < requests.status.size <= 2 * 20 * requests.window_s + 2
    assert set(requests.status.tolist()) == {200}
