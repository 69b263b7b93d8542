"""The concurrency sweep: step up the load until latency passes its budget or throughput stops
growing, with the compared version run at every step too, in alternating order.

Closed loop (the default): each level is a number of users, each sending its next request when
the last is answered. Open loop: each level is an arrival rate (req/s) spread over a fixed pool of
users on fixed schedules, with latency counted from the scheduled time, so a server that falls
behind shows its queue instead of slowing the generator down.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from loadtest.engine import Requests, StepLoad, run_step
from loadtest.floor import floor_server
from loadtest.payloads import Stream
from loadtest.stats import StepStats, step_stats

# Closed loop: a level whose throughput beats the best so far by less than this counts as flat.
MIN_GAIN = 0.05
# Open loop: a server answering less than this share of the offered rate has fallen behind.
KEEP_UP = 0.9
CEILING_MIN_USERS = 8


class ToolBug(RuntimeError):
    """The server refused a request the tool built (4xx): a bug of the tool, not of the model."""


@dataclass(frozen=True)
class SweepPlan:
    levels: tuple[float, ...]  # users (closed loop) or offered req/s (open loop)
    seconds: int
    processes: int = 1
    open_loop: bool = False
    pool: int = 32  # open loop: users sharing the offered rate
    stop_p99_ms: float | None = None
    stop_p50_ms: float | None = None
    plateau_steps: int = 2  # closed loop: flat levels in a row that end the sweep

    def load(self, level: float) -> StepLoad:
        if self.open_loop:
            return StepLoad(self.pool, self.seconds, level / self.pool, self.processes)
        return StepLoad(int(level), self.seconds, None, self.processes)


@dataclass(frozen=True)
class Step:
    level: float
    version: str  # the stream's label
    load: StepLoad
    requests: Requests
    stats: StepStats


@dataclass
class SweepResult:
    plan: SweepPlan
    versions: tuple[str, ...]  # candidate first
    steps: list[Step] = field(default_factory=list)
    stop_reason: str = "every level was run"
    ceiling: Step | None = None  # the generator's own limit, at the candidate's peak load

    def of(self, version: str) -> list[Step]:
        return [s for s in self.steps if s.version == version]

    @property
    def candidate(self) -> str:
        return self.versions[0]

    @property
    def peak_throughput(self) -> float:
        return max((s.stats.throughput for s in self.steps), default=0.0)


def _check_requests(step: Step) -> None:
    if step.stats.client_errors:
        answers = "; ".join(
            f"{code}: {text}" for code, text in step.requests.errors.items() if 400 <= code < 500
        )
        raise ToolBug(
            f"the server refused {step.stats.client_errors} of {step.stats.requests} requests "
            f"the tool built for {step.version} (a bug of the load-test tool, please report it): "
            f"{answers}"
        )


def _stop_reason(plan: SweepPlan, steps: Sequence[Step]) -> str | None:
    """Why the sweep ends after the candidate's last step, or None to go on."""
    last = steps[-1]
    where = _level_text(plan, last.level)
    for name, value, budget in (
        ("p99", last.stats.p99, plan.stop_p99_ms),
        ("p50", last.stats.p50, plan.stop_p50_ms),
    ):
        if budget is not None and value > budget:
            return f"{name} {value:.2f} ms passed its budget of {budget:g} ms at {where}"
    if plan.open_loop:
        if last.stats.throughput < KEEP_UP * last.level:
            return (
                f"the server answered {last.stats.throughput:.0f} of the {last.level:g} req/s "
                "offered: it has fallen behind"
            )
        return None
    best = 0.0
    flat = 0
    for step in steps:
        if step.stats.throughput < best * (1 + MIN_GAIN):
            flat += 1
        else:
            flat = 0
        best = max(best, step.stats.throughput)
    if flat >= plan.plateau_steps:
        return (
            f"throughput stopped growing: {flat} level(s) in a row up to {where} "
            f"beat the best {best:.0f} req/s by less than {MIN_GAIN:.0%}"
        )
    return None


def _level_text(plan: SweepPlan, level: float) -> str:
    return f"{level:g} req/s offered" if plan.open_loop else f"{int(level)} users"


def run_sweep(
    url: str,
    streams: Sequence[Stream],
    plan: SweepPlan,
    report: Callable[[Step], None] = lambda step: None,
) -> SweepResult:
    """Run `plan` against `url`: the first stream is the candidate, a second one is compared
    with it at every level (the order alternates, so that drift on the machine hits both)."""
    result = SweepResult(plan, tuple(s.name for s in streams))
    for index, level in enumerate(plan.levels):
        order = streams if index % 2 == 0 else list(reversed(streams))
        for stream in order:
            load = plan.load(level)
            requests = run_step(url, [stream], load)[stream.name]
            step = Step(level, stream.name, load, requests, step_stats(requests))
            result.steps.append(step)
            report(step)
            _check_requests(step)
        reason = _stop_reason(plan, result.of(result.candidate))
        if reason is not None:
            result.stop_reason = reason
            break
    # Whether the generator limits the sweep matters most where the throughput peaked; a few
    # users at least, so that the generator's work, not one user's round trips, is measured.
    peak = max(result.of(result.candidate), key=lambda s: s.stats.throughput)
    users = max(peak.load.users, CEILING_MIN_USERS)
    result.ceiling = measure_ceiling(streams[0], plan, users, report)
    return result


def measure_ceiling(
    stream: Stream, plan: SweepPlan, users: int, report: Callable[[Step], None] = lambda step: None
) -> Step:
    """`stream`'s own requests, closed loop, from `users` users and the plan's processes, sent to
    a server on this machine that answers at once: the most requests per second this generator
    can drive here, whatever the server under test does."""
    load = StepLoad(users, plan.seconds, None, plan.processes)
    ceiling = replace(stream, name=f"generator ceiling ({stream.name} requests)")
    with floor_server() as url:
        requests = run_step(url, [ceiling], load)[ceiling.name]
    step = Step(users, ceiling.name, load, requests, step_stats(requests))
    report(step)
    return step
