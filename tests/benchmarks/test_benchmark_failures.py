"""Benchmarks refuse figures that rest on failed or wrong answers: wrk's error counts, the one
checked request before timing, and the exit status of every benchmark's command."""

from __future__ import annotations

import json

import pytest
from live_server import LiveServer

from benchmarks.failures import (
    BenchmarkFailed,
    check_answer,
    exits_non_zero_on_failure,
    has_prediction,
    has_predictions,
)
from benchmarks.wrk import parse_wrk_output

WRK_REPORT = """Running 2s test @ http://127.0.0.1:8000/predict
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   510.00us  100.00us   2.00ms   90.00%
  Latency Distribution
     50%  480.00us
     75%  550.00us
     90%  650.00us
     99%    1.20ms
  31000 requests in 2.00s, 9.00MB read
{errors}Requests/sec:  15500.00
Transfer/sec:      4.50MB
"""


def test_a_clean_wrk_run_gives_its_figures():
    result = parse_wrk_output("http://x/predict", WRK_REPORT.format(errors=""))
    assert (result.requests_per_s, result.p50_ms, result.p99_ms) == (15500.0, 0.48, 1.2)
    assert result.requests == 31000


@pytest.mark.parametrize(
    "errors",
    [
        "  Non-2xx or 3xx responses: 12\n",
        "  Socket errors: connect 0, read 3, write 0, timeout 0\n",
        "  Socket errors: connect 0, read 0, write 0, timeout 1\n",
    ],
)
def test_any_failed_request_under_wrk_fails_the_run(errors: str):
    with pytest.raises(BenchmarkFailed, match=r"of 31000 requests failed"):
        parse_wrk_output("http://x/predict", WRK_REPORT.format(errors=errors))


@pytest.mark.slow
def test_the_checked_request_must_answer_200_and_what_is_expected(served: LiveServer):
    good = json.dumps({"model": "churn-risk", "features": {}})
    with pytest.raises(BenchmarkFailed, match="answered 422"):
        check_answer(served.url + "/predict", good)
    with pytest.raises(BenchmarkFailed, match="answered 404"):
        check_answer(served.url + "/predict", json.dumps({"model": "nope", "features": [1]}))
    models = check_answer(served.url + "/models", None)
    assert "models" in models
    with pytest.raises(BenchmarkFailed, match="no prediction"):
        check_answer(served.url + "/models", None, has_prediction)
    with pytest.raises(BenchmarkFailed, match="expected 64 predictions"):
        check_answer(served.url + "/models", None, has_predictions(64))


def test_a_failed_benchmark_exits_1_and_says_why(capsys: pytest.CaptureFixture[str]):
    @exits_non_zero_on_failure
    def main(argv):
        raise BenchmarkFailed("http://x/predict: 12 of 31000 requests failed under wrk")

    assert main([]) == 1
    assert "benchmark failed: http://x/predict: 12 of 31000" in capsys.readouterr().err
