"""Charts of a sweep, as PNG: throughput against load, latency against throughput, and latency
over time with the steps marked; one colour per version."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from loadtest.sweep import Step, SweepResult

COLOURS = ("tab:blue", "tab:orange")
BIN_S = 0.5  # latency over time: percentiles of each half second
SIZE = (9, 5)


def _level_label(result: SweepResult) -> str:
    return "offered load (req/s)" if result.plan.open_loop else "concurrent users"


def _finish(figure: Figure, axes: Axes, title: str, path: Path) -> None:
    axes.set_title(title, fontsize=12)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize=9, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def throughput_chart(result: SweepResult, path: Path) -> None:
    figure, axes = plt.subplots(figsize=SIZE)
    for colour, version in zip(COLOURS, result.versions, strict=False):
        steps = sorted(result.of(version), key=lambda s: s.level)
        axes.plot(
            [s.level for s in steps],
            [s.stats.throughput for s in steps],
            marker="o",
            color=colour,
            label=version,
        )
    if result.plan.open_loop:  # a server that keeps up answers what is offered
        levels = sorted({s.level for s in result.steps})
        axes.plot(
            levels, levels, color="lightgrey", linewidth=7, zorder=0, label="offered (kept up)"
        )
    if result.ceiling is not None:
        ceiling = result.ceiling.stats.throughput
        axes.axhline(ceiling, color="grey", linestyle="--", linewidth=1)
        axes.annotate(
            f"generator ceiling: {ceiling:,.0f} req/s against a server that answers at once",
            (0.01, ceiling),
            xycoords=("axes fraction", "data"),
            textcoords="offset points",
            xytext=(0, 4),
            fontsize=8,
            color="dimgrey",
        )
    _log2_levels(axes, result)
    axes.set_xlabel(_level_label(result))
    axes.set_ylabel("answered requests per second")
    axes.set_ylim(bottom=0)
    _finish(figure, axes, "Throughput against load", path)


def _log2_levels(axes: Axes, result: SweepResult) -> None:
    levels = sorted({s.level for s in result.steps})
    if len(levels) > 2 and levels[-1] / max(levels[0], 1e-9) >= 8:
        axes.set_xscale("log", base=2)
    axes.set_xticks(levels, [f"{lv:g}" for lv in levels])
    axes.minorticks_off()


def latency_chart(result: SweepResult, path: Path) -> None:
    figure, axes = plt.subplots(figsize=SIZE)
    for colour, version in zip(COLOURS, result.versions, strict=False):
        steps = sorted(result.of(version), key=lambda s: s.level)
        x = [s.stats.throughput for s in steps]
        axes.plot(x, [s.stats.p50 for s in steps], marker="o", color=colour, label=f"{version} p50")
        axes.plot(
            x,
            [s.stats.p99 for s in steps],
            marker="^",
            linestyle="--",
            color=colour,
            label=f"{version} p99",
        )
        for s in steps:
            axes.annotate(
                f"{s.level:g}",
                (s.stats.throughput, s.stats.p99),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
                color=colour,
            )
    _log_if_wide(axes, [s.stats.p50 for s in result.steps] + [s.stats.p99 for s in result.steps])
    axes.set_xlabel("answered requests per second")
    axes.set_ylabel("latency (ms)")
    unit = "req/s offered" if result.plan.open_loop else "users"
    _finish(figure, axes, f"Latency against throughput (points labelled with {unit})", path)


def _log_if_wide(axes: Axes, values: list[float]) -> None:
    finite = [v for v in values if np.isfinite(v) and v > 0]
    if finite and max(finite) / min(finite) > 20:
        axes.set_yscale("log")
    else:
        axes.set_ylim(bottom=0)


def _bins(step: Step, origin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time (s since `origin`), p50 and p99 of each BIN_S of the step's answered requests."""
    ok = (step.requests.status >= 200) & (step.requests.status < 300)
    start, latency = step.requests.start[ok] - origin, step.requests.latency_ms[ok]
    if start.size == 0:
        return np.array([]), np.array([]), np.array([])
    edges = np.arange(start.min(), start.max() + BIN_S, BIN_S)
    which = np.digitize(start, edges)
    centres, p50, p99 = [], [], []
    for b in np.unique(which):
        values = latency[which == b]
        centres.append(edges[b - 1] + BIN_S / 2)
        p50.append(np.percentile(values, 50))
        p99.append(np.percentile(values, 99))
    return np.array(centres), np.array(p50), np.array(p99)


def timeline_chart(result: SweepResult, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(12, 5))
    steps = sorted(result.steps, key=lambda s: s.requests.start[0] if s.requests.start.size else 0)
    starts = [s.requests.start[0] for s in steps if s.requests.start.size]
    if not starts:
        plt.close(figure)
        return
    origin = min(starts)
    labelled: set[str] = set()
    for step in steps:
        if not step.requests.start.size:
            continue
        colour = COLOURS[result.versions.index(step.version) % len(COLOURS)]
        begin = step.requests.start[0] - origin
        end = step.requests.start[-1] - origin
        axes.axvspan(begin, end, color=colour, alpha=0.07)
        axes.annotate(
            f"{step.level:g}",
            ((begin + end) / 2, 1.0),
            xycoords=("data", "axes fraction"),
            textcoords="offset points",
            xytext=(0, -12),
            ha="center",
            fontsize=7,
            color=colour,
        )
        t, p50, p99 = _bins(step, origin)
        first = step.version not in labelled
        labelled.add(step.version)
        axes.plot(
            t, p99, color=colour, linewidth=1.5, label=f"{step.version} p99" if first else None
        )
        axes.plot(
            t,
            p50,
            color=colour,
            linewidth=1,
            linestyle=":",
            label=f"{step.version} p50" if first else None,
        )
    _log_if_wide(axes, [s.stats.p50 for s in result.steps] + [s.stats.max_ms for s in result.steps])
    unit = "req/s offered" if result.plan.open_loop else "users"
    axes.set_xlabel("seconds since the first step (gaps: Locust starting for the next step)")
    axes.set_ylabel(f"latency (ms), each {BIN_S:g} s")
    _finish(figure, axes, f"Latency over time; shaded: one step each, labelled with {unit}", path)


def write_charts(result: SweepResult, folder: Path) -> list[str]:
    """Every chart of `result` under `folder`; their file names."""
    charts = {
        "throughput.png": throughput_chart,
        "latency.png": latency_chart,
        "timeline.png": timeline_chart,
    }
    for name, draw in charts.items():
        draw(result, folder / name)
    return [name for name in charts if (folder / name).exists()]
