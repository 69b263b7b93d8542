"""Budgets that make a sweep a release gate: each one broken is named, and the exit is non-zero.

[budgets]
max_p99_ms = 50        # latency ceilings: the sweep also stops at the first level past them
max_p50_ms = 10
min_throughput = 500   # req/s the candidate must reach within the latency ceilings
max_error_rate = 0.0   # share of failed requests (5xx, no answer) at any level
max_p99_ratio = 1.2    # candidate / compared version, median over the levels both ran
max_p50_ratio = 1.2
min_throughput_ratio = 0.9
"""

from __future__ import annotations

import statistics
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from loadtest.stats import StepStats
from loadtest.sweep import Step, SweepResult


@dataclass(frozen=True)
class Budgets:
    max_p99_ms: float | None = None
    max_p50_ms: float | None = None
    min_throughput: float | None = None
    max_error_rate: float = 0.0
    max_p99_ratio: float | None = None
    max_p50_ratio: float | None = None
    min_throughput_ratio: float | None = None

    @classmethod
    def from_toml(cls, path: Path) -> Budgets:
        table = tomllib.loads(path.read_text()).get("budgets", {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ValueError(f"{path}: unknown budgets {unknown}; known: {sorted(known)}")
        return cls(**table)

    def merged(self, **overrides: Any) -> Budgets:
        """These budgets, with every override that is not None."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return Budgets(**values)

    def within_latency(self, stats: StepStats) -> bool:
        return (self.max_p99_ms is None or stats.p99 <= self.max_p99_ms) and (
            self.max_p50_ms is None or stats.p50 <= self.max_p50_ms
        )


@dataclass(frozen=True)
class Ratio:
    """One figure of the candidate over the compared version's, level by level."""

    figure: str
    by_level: dict[float, float]

    @property
    def median(self) -> float:
        return statistics.median(self.by_level.values())


def ratios(result: SweepResult) -> dict[str, Ratio]:
    """p50, p99 and throughput of the candidate over the compared version at each level both
    ran; empty without a compared version."""
    if len(result.versions) < 2:
        return {}
    base = {s.level: s.stats for s in result.of(result.versions[1])}
    pairs = [
        (s.level, s.stats, base[s.level]) for s in result.of(result.candidate) if s.level in base
    ]
    figures = {
        "p50": lambda st: st.p50,
        "p99": lambda st: st.p99,
        "throughput": lambda st: st.throughput,
    }
    return {
        name: Ratio(name, {level: get(c) / get(b) for level, c, b in pairs if get(b) > 0})
        for name, get in figures.items()
    }


def capacity(result: SweepResult, budgets: Budgets) -> Step | None:
    """The candidate's level with the highest throughput within the latency ceilings."""
    fitting = [s for s in result.of(result.candidate) if budgets.within_latency(s.stats)]
    return max(fitting, key=lambda s: s.stats.throughput, default=None)


def broken_budgets(result: SweepResult, budgets: Budgets) -> list[str]:
    """Every budget the candidate broke, in words; empty when it may ship."""
    broken = []
    steps = result.of(result.candidate)
    best = capacity(result, budgets)
    first = steps[0].stats
    if budgets.max_p99_ms is not None and best is None and first.p99 > budgets.max_p99_ms:
        broken.append(
            f"max_p99_ms: p99 was {first.p99:.2f} ms already at the lightest load, "
            f"budget {budgets.max_p99_ms:g} ms"
        )
    if budgets.max_p50_ms is not None and best is None and first.p50 > budgets.max_p50_ms:
        broken.append(
            f"max_p50_ms: p50 was {first.p50:.2f} ms already at the lightest load, "
            f"budget {budgets.max_p50_ms:g} ms"
        )
    if budgets.min_throughput is not None:
        reached = best.stats.throughput if best is not None else 0.0
        if reached < budgets.min_throughput:
            broken.append(
                f"min_throughput: the best within the latency budgets was {reached:.0f} req/s, "
                f"budget {budgets.min_throughput:g} req/s"
            )
    for step in steps:
        if step.stats.error_rate > budgets.max_error_rate:
            broken.append(
                f"max_error_rate: {step.stats.error_rate:.2%} of requests failed at level "
                f"{step.level:g}, budget {budgets.max_error_rate:.2%}"
            )
    measured = ratios(result)
    for figure, limit, worse in (
        ("p99", budgets.max_p99_ratio, lambda r, b: r > b),
        ("p50", budgets.max_p50_ratio, lambda r, b: r > b),
        ("throughput", budgets.min_throughput_ratio, lambda r, b: r < b),
    ):
        if limit is None or figure not in measured or not measured[figure].by_level:
            continue
        ratio = measured[figure]
        if worse(ratio.median, limit):
            levels = ", ".join(f"{lv:g}: {v:.2f}x" for lv, v in ratio.by_level.items())
            name = f"{'min' if figure == 'throughput' else 'max'}_{figure}_ratio"
            broken.append(
                f"{name}: {result.candidate} / {result.versions[1]} {figure} is "
                f"{ratio.median:.2f}x (median over levels {levels}), budget {limit:g}x"
            )
    return broken
