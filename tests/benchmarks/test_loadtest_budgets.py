"""Stop rules, budgets, ratios and report text, on sweeps made up here (no load is run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loadtest.budgets import Budgets, broken_budgets, capacity, ratios
from loadtest.charts import write_charts
from loadtest.engine import Requests, StepLoad
from loadtest.report import generator_note, markdown
from loadtest.stats import StepStats, step_stats
from loadtest.sweep import Step, SweepPlan, SweepResult, _stop_reason

CLOSED = SweepPlan(levels=(1, 2, 4, 8, 16), seconds=5)


def made_up(
    level: float, version: str, throughput: float, p50: float, p99: float, errors: int = 0
) -> Step:
    stats = StepStats(
        1000, 1000 - errors, 0, errors, throughput, {50: p50, 90: p99, 95: p99, 99: p99}, p99
    )
    requests = Requests(version, 5.0, np.array([]), np.array([]), np.array([]), {}, 1)
    return Step(level, version, StepLoad(int(level), 5), requests, stats)


def sweep(
    *steps: Step, versions: tuple[str, ...] = ("v2",), plan: SweepPlan = CLOSED
) -> SweepResult:
    return SweepResult(plan, versions, list(steps))


def test_closed_loop_goes_on_while_throughput_grows():
    steps = [made_up(1, "v2", 100, 1, 2), made_up(2, "v2", 190, 1, 2), made_up(4, "v2", 300, 1, 3)]
    assert _stop_reason(CLOSED, steps) is None


def test_closed_loop_stops_after_two_flat_levels_in_a_row():
    steps = [
        made_up(1, "v2", 100, 1, 2),
        made_up(2, "v2", 300, 1, 2),
        made_up(4, "v2", 310, 2, 4),  # +3%: flat
        made_up(8, "v2", 290, 4, 9),  # below the best: flat
    ]
    reason = _stop_reason(CLOSED, steps)
    assert reason is not None
    assert reason.startswith("throughput stopped growing: 2 level(s) in a row up to 8 users")
    assert _stop_reason(CLOSED, steps[:3]) is None  # one flat level is noise


def test_a_percentile_past_its_stop_budget_ends_the_sweep_first():
    plan = SweepPlan(levels=(1, 2), seconds=5, stop_p99_ms=5.0)
    reason = _stop_reason(plan, [made_up(1, "v2", 100, 1, 2), made_up(2, "v2", 200, 2, 5.5)])
    assert reason == "p99 5.50 ms passed its budget of 5 ms at 2 users"
    plan = SweepPlan(levels=(1, 2), seconds=5, stop_p50_ms=1.5)
    reason = _stop_reason(plan, [made_up(1, "v2", 100, 1, 2), made_up(2, "v2", 200, 2, 5.5)])
    assert reason == "p50 2.00 ms passed its budget of 1.5 ms at 2 users"


def test_open_loop_stops_when_the_server_falls_behind_the_offered_rate():
    plan = SweepPlan(levels=(100, 200, 400), seconds=5, open_loop=True)
    assert _stop_reason(plan, [made_up(100, "v2", 99, 1, 2)]) is None
    reason = _stop_reason(plan, [made_up(100, "v2", 99, 1, 2), made_up(200, "v2", 150, 9, 80)])
    assert reason == "the server answered 150 of the 200 req/s offered: it has fallen behind"


def test_capacity_is_the_best_throughput_within_the_latency_budgets():
    result = sweep(
        made_up(1, "v2", 100, 1, 2), made_up(2, "v2", 300, 2, 8), made_up(4, "v2", 400, 5, 30)
    )
    best = capacity(result, Budgets(max_p99_ms=10))
    assert best is not None and best.level == 2
    assert broken_budgets(result, Budgets(max_p99_ms=10, min_throughput=250)) == []
    assert broken_budgets(result, Budgets(max_p99_ms=10, min_throughput=350)) == [
        "min_throughput: the best within the latency budgets was 300 req/s, budget 350 req/s"
    ]


def test_a_latency_budget_missed_at_the_lightest_load_is_broken():
    result = sweep(made_up(1, "v2", 100, 3, 12))
    assert broken_budgets(result, Budgets(max_p99_ms=10, max_p50_ms=2)) == [
        "max_p99_ms: p99 was 12.00 ms already at the lightest load, budget 10 ms",
        "max_p50_ms: p50 was 3.00 ms already at the lightest load, budget 2 ms",
    ]


def test_failed_requests_break_the_error_budget_at_their_level():
    result = sweep(made_up(1, "v2", 100, 1, 2), made_up(2, "v2", 200, 1, 2, errors=20))
    assert broken_budgets(result, Budgets()) == [
        "max_error_rate: 2.00% of requests failed at level 2, budget 0.00%"
    ]
    assert broken_budgets(result, Budgets(max_error_rate=0.05)) == []


def comparison() -> SweepResult:
    return sweep(
        made_up(1, "v4", 90, 1.1, 3.0), made_up(1, "v3", 100, 1.0, 2.0),
        made_up(2, "v3", 200, 1.0, 2.0), made_up(2, "v4", 160, 1.3, 2.6),
        made_up(4, "v4", 300, 2.0, 5.0), made_up(4, "v3", 300, 2.0, 4.0),
        versions=("v4", "v3"),
    )  # fmt: skip


def test_ratios_are_candidate_over_compared_version_level_by_level():
    measured = ratios(comparison())
    assert measured["p99"].by_level == pytest.approx({1: 1.5, 2: 1.3, 4: 1.25})
    assert measured["p99"].median == pytest.approx(1.3)
    assert measured["throughput"].by_level == pytest.approx({1: 0.9, 2: 0.8, 4: 1.0})
    assert ratios(sweep(made_up(1, "v4", 90, 1, 2))) == {}


def test_a_ratio_budget_is_judged_on_the_median_and_names_every_level():
    broken = broken_budgets(comparison(), Budgets(max_p99_ratio=1.2, min_throughput_ratio=0.85))
    assert broken == [
        "max_p99_ratio: v4 / v3 p99 is 1.30x (median over levels 1: 1.50x, 2: 1.30x, 4: 1.25x), "
        "budget 1.2x",
    ]
    assert broken_budgets(comparison(), Budgets(max_p99_ratio=1.3, min_throughput_ratio=0.9)) == []


def test_budgets_file_refuses_names_it_does_not_know(tmp_path: Path):
    path = tmp_path / "budgets.toml"
    path.write_text("[budgets]\nmax_p99_ms = 50\nmax_p99_ratios = 1.2\n")
    with pytest.raises(ValueError, match="unknown budgets \\['max_p99_ratios'\\]"):
        Budgets.from_toml(path)
    path.write_text("[budgets]\nmax_p99_ms = 50\nmax_p99_ratio = 1.2\n")
    assert Budgets.from_toml(path).merged(max_p99_ms=20, min_throughput=None) == Budgets(
        max_p99_ms=20, max_p99_ratio=1.2
    )


def test_the_report_warns_when_the_generator_may_be_the_limit():
    result = comparison()
    result.ceiling = made_up(4, "generator ceiling", 350, 0.5, 1)
    note = generator_note(result)
    assert "the sweep's peak, 300 req/s, is 0.86x of it" in note
    assert "The generator may be the limit here" in note
    result.ceiling = made_up(4, "generator ceiling", 3000, 0.5, 1)
    assert "may be the limit" not in generator_note(result)


def test_the_report_lists_every_step_the_ratios_and_the_broken_budgets():
    result = comparison()
    text = markdown(result, "Load test", Budgets(), ["max_p99_ratio: made up"], ["latency.png"])
    assert text.count("| v4 |") == 3 and text.count("| v3 |") == 3
    assert "| 1 | 0.90x | 1.10x | 1.50x |" in text
    assert "| median | **0.90x** | **1.10x** | **1.30x** |" in text
    assert "- BROKEN max_p99_ratio: made up" in text
    assert "![latency.png](latency.png)" in text


def test_step_stats_count_answers_by_kind_over_the_measured_window():
    status = np.array([200] * 8 + [422, 503])
    requests = Requests("v1", 2.0, np.arange(10.0), np.arange(1.0, 11.0), status, {}, 1)
    stats = step_stats(requests)
    assert (stats.requests, stats.ok, stats.client_errors, stats.other_errors) == (10, 8, 1, 1)
    assert stats.throughput == 4.0
    assert stats.percentiles_ms[50] == pytest.approx(4.5)  # of the 2xx answers only
    assert stats.max_ms == 8.0


def test_charts_are_drawn_for_closed_and_open_loop_sweeps(tmp_path: Path):
    rng = np.random.default_rng(0)
    steps = []
    for i, (level, version) in enumerate([(100, "v2"), (100, "v1"), (200, "v1"), (200, "v2")]):
        start = 1000.0 + i * 3 + np.sort(rng.uniform(0, 2, 400))
        latency = rng.gamma(2.0, 0.5, 400)
        requests = Requests(version, 2.0, start, latency, np.full(400, 200), {}, 1)
        steps.append(
            Step(level, version, StepLoad(8, 2, level / 8), requests, step_stats(requests))
        )
    plan = SweepPlan(levels=(100, 200), seconds=2, open_loop=True, pool=8)
    result = SweepResult(plan, ("v2", "v1"), steps)
    assert write_charts(result, tmp_path) == ["throughput.png", "latency.png", "timeline.png"]
    for name in ("throughput.png", "latency.png", "timeline.png"):
        assert (tmp_path / name).stat().st_size > 10_000


def test_charts_plot_each_versions_own_figures_on_the_named_axes(tmp_path: Path, monkeypatch):
    """The lines drawn, not only the files: each version's series, on the axes their labels say."""
    from loadtest import charts

    drawn: dict[str, Any] = {}
    finish = charts._finish

    def keep(figure, axes, title, path):
        drawn[path.name] = (
            axes.get_xlabel(),
            axes.get_ylabel(),
            {
                line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
                for line in axes.lines
            },
        )
        finish(figure, axes, title, path)

    monkeypatch.setattr(charts, "_finish", keep)
    result = comparison()
    write_charts(result, tmp_path)

    xlabel, ylabel, lines = drawn["throughput.png"]
    assert (xlabel, ylabel) == ("concurrent users", "answered requests per second")
    for version in ("v4", "v3"):
        steps = sorted(result.of(version), key=lambda s: s.level)
        assert lines[version] == ([s.level for s in steps], [s.stats.throughput for s in steps])

    xlabel, ylabel, lines = drawn["latency.png"]
    assert (xlabel, ylabel) == ("answered requests per second", "latency (ms)")
    for version in ("v4", "v3"):
        steps = sorted(result.of(version), key=lambda s: s.level)
        throughputs = [s.stats.throughput for s in steps]
        assert lines[f"{version} p50"] == (throughputs, [s.stats.p50 for s in steps])
        assert lines[f"{version} p99"] == (throughputs, [s.stats.p99 for s in steps])
