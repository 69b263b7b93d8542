"""The sweep as Markdown (for people) and CSV (for spreadsheets and scripts)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from loadtest.budgets import Budgets, capacity, ratios
from loadtest.stats import PERCENTILES
from loadtest.sweep import SweepResult

# The peak throughput over the generator's ceiling above which the generator, not the server,
# may be what limits the sweep.
GENERATOR_BOUND = 0.8
CSV_FIELDS = (
    "level", "version", "users", "user_rate", "processes", "seconds", "requests", "ok",
    "client_errors", "other_errors", "throughput", *(f"p{p}_ms" for p in PERCENTILES), "max_ms",
)  # fmt: skip


def write_csv(result: SweepResult, path: Path) -> None:
    steps = [*result.steps, *([result.ceiling] if result.ceiling else [])]
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(CSV_FIELDS)
        for s in steps:
            st = s.stats
            writer.writerow(
                [
                    f"{s.level:g}", s.version, s.load.users, s.load.user_rate or "",
                    s.load.processes, s.load.seconds, st.requests, st.ok, st.client_errors,
                    st.other_errors, f"{st.throughput:.1f}",
                    *(f"{st.percentiles_ms[p]:.3f}" for p in PERCENTILES), f"{st.max_ms:.3f}",
                ]
            )  # fmt: skip


def generator_note(result: SweepResult) -> str:
    """How the peak compares with what the generator can drive, in words."""
    if result.ceiling is None:
        return "The generator's ceiling was not measured."
    ceiling = result.ceiling.stats.throughput
    share = result.peak_throughput / ceiling if ceiling else float("inf")
    text = (
        f"Generator ceiling: {ceiling:,.0f} req/s (the candidate's requests, "
        f"{result.ceiling.load.users} users, {result.ceiling.load.processes} Locust process(es), "
        "sent to a server on this machine that answers at once); the sweep's peak, "
        f"{result.peak_throughput:,.0f} req/s, is {share:.2f}x of it."
    )
    if share >= GENERATOR_BOUND:
        text += (
            " **The generator may be the limit here, not the server**: add Locust processes "
            "(`--processes`), or run the generator on another machine."
        )
    return text


def _level_header(result: SweepResult) -> str:
    return "offered req/s" if result.plan.open_loop else "users"


def markdown(
    result: SweepResult, title: str, budgets: Budgets, broken: Sequence[str], charts: Sequence[str]
) -> str:
    plan = result.plan
    mode = (
        f"open loop: arrival rates over {plan.pool} users, latency counted from each request's "
        "scheduled time"
        if plan.open_loop
        else "closed loop: each user sends its next request when the last one is answered"
    )
    lines = [
        f"# {title}",
        "",
        f"- Load: {mode}; {plan.seconds} s a step, the first 0.5 s of each left out; "
        f"{plan.processes} Locust process(es).",
        f"- Stopped: {result.stop_reason}.",
        f"- {generator_note(result)}",
    ]
    best = capacity(result, budgets)
    if best is not None:
        lines.append(
            f"- Best throughput of {result.candidate} within the latency budgets: "
            f"{best.stats.throughput:,.0f} req/s at {best.level:g} {_level_header(result)} "
            f"(p50 {best.stats.p50:.2f} ms, p99 {best.stats.p99:.2f} ms)."
        )
    lines += ["", "## Steps", "", _steps_table(result)]
    measured = ratios(result)
    if measured:
        lines += ["", f"## {result.candidate} / {result.versions[1]}", "", _ratio_table(result)]
    lines += ["", "## Budgets", ""]
    if broken:
        lines += [f"- BROKEN {line}" for line in broken]
    else:
        lines.append("Every budget holds.")
    lines += ["", "## Charts", "", *(f"![{c}]({c})" for c in charts), ""]
    return "\n".join(lines)


def _steps_table(result: SweepResult) -> str:
    rows = [
        f"| {_level_header(result)} | version | requests | errors | req/s | p50 ms | p90 ms "
        "| p99 ms | max ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    steps = sorted(result.steps, key=lambda s: (s.level, result.versions.index(s.version)))
    for s in steps:
        st = s.stats
        rows.append(
            f"| {s.level:g} | {s.version} | {st.requests} | {st.client_errors + st.other_errors} "
            f"| {st.throughput:,.0f} | {st.p50:.2f} | {st.percentiles_ms[90]:.2f} "
            f"| {st.p99:.2f} | {st.max_ms:.2f} |"
        )
    return "\n".join(rows)


def _ratio_table(result: SweepResult) -> str:
    measured = ratios(result)
    levels = sorted(measured["p99"].by_level)
    rows = [
        f"| {_level_header(result)} | throughput | p50 | p99 |",
        "| --- | --- | --- | --- |",
    ]
    for level in levels:
        cells = [
            f"{measured[f].by_level.get(level, float('nan')):.2f}x"
            for f in ("throughput", "p50", "p99")
        ]
        rows.append(f"| {level:g} | {' | '.join(cells)} |")
    medians = [f"**{measured[f].median:.2f}x**" for f in ("throughput", "p50", "p99")]
    rows.append(f"| median | {' | '.join(medians)} |")
    return "\n".join(rows)
