"""A candidate version on live traffic: canary share, sticky routing, shadow scoring, halt.

One `Rollout` lives per model while its `model.toml` has a `[rollout]` table, and is replaced
when that file changes (which also lifts a halt). Every decision comes from the configuration
and a stable hash, so workers and replicas agree without talking to each other; the counts are
this process's own, and Prometheus sums them across processes.

The request path pays for a rollout only where one is configured: `pick` chooses the version,
`answered` notes the answer and may queue the rows for the candidate. Shadow rows are scored by
a task of their own, fed by a bounded queue, between requests (its session runs go to a worker
thread when large, as requests' do); a full queue drops the rows and counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import math
import operator
import random
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from ml.config import RolloutConfig
from ml.observer import ServingObserver
from ml.outputs import Predictions
from ml.samples import DEFAULT_ATOL, DEFAULT_RTOL

if TYPE_CHECKING:
    from ml.model import LoadedModel

log = logging.getLogger(__name__)

BUCKETS = 100
# Shadow rows waiting for the candidate; beyond this they are dropped, never waited for.
SHADOW_QUEUE_ROWS = 4096
# How long shadow rows gather between two rounds of scoring.
SHADOW_GATHER_S = 0.02
# Rows checked, run and compared between two yields of the event loop.
SHADOW_SLICE_ROWS = 32
LATENCY_SAMPLES = 2048
Z95 = 1.959963984540054


class RolloutState(StrEnum):
    NONE = "none"
    PENDING = "pending"
    ACTIVE = "active"
    HALTED = "halted"


class RolloutStates:
    """The rollout state last seen for one model: every change is one log line and one count
    for the observer, whoever notices it (the registry after a sync, a rollout as it halts)."""

    __slots__ = ("model", "observer", "state")

    def __init__(self, model: str, observer: ServingObserver | None) -> None:
        self.model = model
        self.observer = observer
        self.state = RolloutState.NONE

    def moved(self, state: RolloutState, why: str) -> None:
        if state is self.state:
            return
        level = logging.WARNING if state is RolloutState.HALTED else logging.INFO
        log.log(level, "model %s: rollout %s -> %s: %s", self.model, self.state, state, why)
        self.state = state
        if self.observer is not None:
            self.observer.rollout_state_changed(self.model, state.value)


def bucket(model: str, key: str, buckets: int = BUCKETS) -> int:
    """The bucket (0 to `buckets` - 1) of a routing key: the same on every worker, replica and
    restart."""
    digest = hashlib.blake2b(f"{model}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % buckets


def wilson_interval(successes: int, total: int) -> tuple[float, float] | None:
    """The 95% Wilson score interval of a proportion; None without observations."""
    if total == 0:
        return None
    p = successes / total
    denominator = 1 + Z95**2 / total
    centre = (p + Z95**2 / (2 * total)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / total + Z95**2 / (4 * total**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class RowComparison:
    """How the candidate's answer for one row compares with the default's."""

    agreed: bool
    abs_diff: float | None  # mean absolute difference of the numbers, None when there are none


def _numbers(value: Any) -> Iterator[float]:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield float(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _numbers(item)


def _row(answer: Predictions, index: int) -> tuple[Any, Any]:
    """(what decides agreement, the numbers compared) of one row of an answer."""
    if answer.probabilities is not None and answer.predictions is not None:
        return answer.predictions[index], answer.probabilities[index]
    if answer.scores is not None and answer.predictions is not None:
        return answer.predictions[index], answer.scores[index]
    if answer.distances is not None and answer.predictions is not None:
        return answer.predictions[index], answer.distances[index]
    if answer.predictions is not None:
        return None, answer.predictions[index]
    outputs = answer.outputs or {}
    return None, {name: values[index] for name, values in outputs.items()}


def compare_rows(default: Predictions, candidate: Predictions, rows: int) -> list[RowComparison]:
    """Row by row: decisions equal (classes, outlier labels, clusters), or every number within
    the samples.json tolerances of the default's (regressors and other models)."""
    fast = _compare_classifier(default, candidate, rows) or _compare_regressor(
        default, candidate, rows
    )
    if fast is not None:
        return fast
    results = []
    for index in range(rows):
        default_class, default_values = _row(default, index)
        candidate_class, candidate_values = _row(candidate, index)
        if (
            isinstance(default_values, Mapping)
            and isinstance(candidate_values, Mapping)
            and default_values.keys() == candidate_values.keys()
        ):  # the same names in another order: compared name by name
            candidate_values = {key: candidate_values[key] for key in default_values}
        ours, theirs = list(_numbers(default_values)), list(_numbers(candidate_values))
        diff = (
            sum(abs(o - t) for o, t in zip(ours, theirs, strict=True)) / len(ours)
            if ours and len(ours) == len(theirs)
            else None
        )
        if default.decided:
            agreed = default_class == candidate_class
        else:
            agreed = len(ours) == len(theirs) and all(
                abs(o - t) <= DEFAULT_ATOL + DEFAULT_RTOL * abs(o)
                for o, t in zip(ours, theirs, strict=True)
            )
        results.append(RowComparison(agreed, diff))
    return results


def _matrix(rows: list[dict[str, float]], width: int) -> np.ndarray:
    values = itertools.chain.from_iterable(map(dict.values, rows))
    return np.fromiter(values, float, count=len(rows) * width).reshape(len(rows), width)


def _compare_classifier(
    default: Predictions, candidate: Predictions, rows: int
) -> list[RowComparison] | None:
    """Two classifiers naming the same classes in the same order: compared a slice at a time."""
    ours, theirs = default.probabilities, candidate.probabilities
    if not ours or not theirs or default.predictions is None or candidate.predictions is None:
        return None
    keys = tuple(ours[0])  # in order: values are compared by position below
    if any(tuple(row) != keys for row in itertools.chain(ours, theirs)):
        return None
    diffs = np.abs(_matrix(ours, len(keys)) - _matrix(theirs, len(keys))).mean(axis=1).tolist()
    agreed = map(operator.eq, default.predictions, candidate.predictions)
    return list(map(RowComparison, agreed, diffs))


def _compare_regressor(
    default: Predictions, candidate: Predictions, rows: int
) -> list[RowComparison] | None:
    """Two models answering one number per row: compared a slice at a time."""
    ours, theirs = default.predictions, candidate.predictions
    if (
        ours is None
        or theirs is None
        or default.decided
        or candidate.decided
        or not all(type(v) is float for v in itertools.chain(ours, theirs))
    ):
        return None
    mine, other = np.asarray(ours, float), np.asarray(theirs, float)
    diff = np.abs(mine - other)
    agreed = (diff <= DEFAULT_ATOL + DEFAULT_RTOL * np.abs(mine)).tolist()
    return list(map(RowComparison, agreed, diff.tolist()))


class _Window:
    """The last `size` outcomes and how many of them were true, kept as they stream in."""

    __slots__ = ("outcomes", "size", "true")

    def __init__(self, size: int) -> None:
        self.outcomes: deque[bool] = deque()
        self.size = size
        self.true = 0

    def add(self, outcome: bool) -> None:
        self.outcomes.append(outcome)
        self.true += outcome
        if len(self.outcomes) > self.size:
            self.true -= self.outcomes.popleft()

    def share(self, at_least: int) -> float | None:
        """The share of true outcomes, once the window holds `at_least` of them."""
        count = len(self.outcomes)
        return self.true / count if count >= at_least else None


@dataclass(slots=True)
class Rollout:
    """The live state of one model's `[rollout]`."""

    model: str
    config: RolloutConfig
    observer: ServingObserver | None = None
    states: RolloutStates | None = None
    halt_reason: str | None = None
    answered: dict[int, int] = field(default_factory=dict)
    compared: int = 0
    agreed: int = 0
    errors: int = 0
    dropped: int = 0
    _abs_diff_sum: float = 0.0
    _abs_diff_rows: int = 0
    _recent_agreement: _Window = field(init=False)
    _recent_failures: _Window = field(init=False)
    _latency: dict[int, deque[float]] = field(default_factory=dict)
    _pending: list[tuple[LoadedModel, Sequence[Any], Predictions]] = field(default_factory=list)
    _pending_rows: int = 0
    _worker: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self._recent_agreement = _Window(self.config.window)
        self._recent_failures = _Window(self.config.window)
        if self.states is None:
            self.states = RolloutStates(self.model, self.observer)

    @property
    def candidate(self) -> int:
        return self.config.candidate

    def state(self, candidate: LoadedModel | None) -> RolloutState:
        if self.halt_reason is not None:
            return RolloutState.HALTED
        return RolloutState.PENDING if candidate is None else RolloutState.ACTIVE

    # -- on the request path ----------------------------------------------------------------

    def pick(
        self, default: LoadedModel | None, candidate: LoadedModel | None, key: str | None
    ) -> LoadedModel | None:
        """The version that answers a request naming none: the candidate for its share."""
        if candidate is None or self.halt_reason is not None or not self.config.traffic_percent:
            return default
        if key is not None and self.config.sticky_header is not None:
            share = bucket(self.model, key)
        else:
            share = random.random() * BUCKETS  # noqa: S311 - a traffic split, not a secret
        return candidate if share < self.config.traffic_percent or default is None else default

    def answered_by(self, model: LoadedModel, seconds: float) -> None:
        """A request naming no version was answered by `model` in `seconds`."""
        version = model.version
        self.answered[version] = self.answered.get(version, 0) + 1
        self._latency_of(version).append(seconds)
        if version == self.candidate:
            self._note_failures(1, failed=False)
        if self.observer is not None:
            self.observer.rollout_answered(self.model, version)

    def candidate_failed(self) -> None:
        """The candidate failed to answer a request it was routed."""
        self._note_failures(1, failed=True)

    def shadow(
        self, candidate: LoadedModel | None, rows: Sequence[Any], default: Predictions
    ) -> None:
        """Set `rows`, answered by the default, aside for the candidate, for its share."""
        if (
            candidate is None
            or self.halt_reason is not None
            or not self.config.shadow_percent
            or random.random() * 100 >= self.config.shadow_percent  # noqa: S311 - sampling
        ):
            return
        if self._worker is None:  # made on first use, in the running loop
            self._worker = asyncio.get_running_loop().create_task(self._score_shadows())
        if self._pending_rows + len(rows) > SHADOW_QUEUE_ROWS:
            self.dropped += len(rows)
            if self.observer is not None:
                self.observer.shadow_compared(self.model, self.candidate, "dropped", len(rows))
            return
        self._pending.append((candidate, rows, default))
        self._pending_rows += len(rows)

    # -- off the request path ---------------------------------------------------------------

    async def _score_shadows(self) -> None:
        while True:
            # Rows gather meanwhile: a run's fixed cost, shared by many rows, is what keeps
            # shadowing every request affordable. Nobody waits for these answers.
            await asyncio.sleep(SHADOW_GATHER_S)
            pending, self._pending, self._pending_rows = self._pending, [], 0
            by_candidate: dict[int, list[tuple[LoadedModel, Sequence[Any], Predictions]]] = {}
            for item in pending:  # the candidate may have been reloaded meanwhile
                by_candidate.setdefault(id(item[0]), []).append(item)
            for items in by_candidate.values():
                await self._score_all(items[0][0], items)

    async def _score_all(
        self, candidate: LoadedModel, items: list[tuple[LoadedModel, Sequence[Any], Predictions]]
    ) -> None:
        all_rows = [row for _, rows, _ in items for row in rows]
        defaults = _joined([default for _, _, default in items])
        # Slices, with the loop yielded between them: checking, decoding and comparing rows is
        # Python work on the event loop, and requests must not wait behind much of it (a worker
        # thread holding the GIL for it would stall the loop for longer).
        for start in range(0, len(all_rows), SHADOW_SLICE_ROWS):
            if self.halt_reason is not None:
                return
            end = min(start + SHADOW_SLICE_ROWS, len(all_rows))
            await self._score(candidate, all_rows[start:end], _slice(defaults, start, end))
            await asyncio.sleep(0)

    async def _score(
        self, candidate: LoadedModel, rows: Sequence[Any], defaults: Predictions
    ) -> None:
        """Score one slice of shadow rows on the candidate and count how they compare."""
        count = len(rows)
        started = time.perf_counter()
        try:
            answer = await candidate.score(rows, ("shadow",))
        except Exception as exc:  # any failure of the candidate is counted, never raised
            log.debug("shadow run of %s/%s failed: %s", self.model, self.candidate, exc)
            self.errors += count
            self._note_failures(count, failed=True)
            if self.observer is not None:
                self.observer.shadow_compared(self.model, self.candidate, "error", count)
            return
        self._latency_of(candidate.version).append(time.perf_counter() - started)
        self._note_failures(count, failed=False)
        self._count(compare_rows(defaults, answer, count))

    def _count(self, results: list[RowComparison]) -> None:
        agreed = sum(r.agreed for r in results)
        self.compared += len(results)
        self.agreed += agreed
        diffs = [r.abs_diff for r in results if r.abs_diff is not None]
        self._abs_diff_sum += sum(diffs)
        self._abs_diff_rows += len(diffs)
        if self.config.min_agreement is not None:
            for result in results:
                self._recent_agreement.add(result.agreed)
                self._check_halt()  # after each row: any window of the stream can trip it
        if self.observer is not None:
            if agreed:
                self.observer.shadow_compared(self.model, self.candidate, "agreed", agreed)
            if len(results) - agreed:
                self.observer.shadow_compared(
                    self.model, self.candidate, "disagreed", len(results) - agreed
                )

    def _note_failures(self, rows: int, *, failed: bool) -> None:
        if self.config.max_error_rate is None:
            return
        for _ in range(min(rows, self.config.window)):
            self._recent_failures.add(failed)
            self._check_halt()

    def _check_halt(self) -> None:
        if self.halt_reason is not None:
            return
        config, reason = self.config, None
        agreement = self._recent_agreement.share(config.window)
        if (
            config.min_agreement is not None
            and agreement is not None
            and agreement < config.min_agreement
        ):
            reason = (
                f"agreement {agreement:.4f} over the last {config.window} compared rows is "
                f"below min_agreement {config.min_agreement}"
            )
        rate = self._recent_failures.share(config.window)
        if (
            reason is None
            and config.max_error_rate is not None
            and rate is not None
            and rate > config.max_error_rate
        ):
            reason = (
                f"error rate {rate:.4f} over the last {config.window} candidate rows is "
                f"above max_error_rate {config.max_error_rate}"
            )
        if reason is not None:
            self.halt_reason = reason
            assert self.states is not None  # set in __post_init__
            self.states.moved(
                RolloutState.HALTED,
                f"version {self.candidate} halted: {reason}; edit model.toml to resume",
            )

    def _latency_of(self, version: int) -> deque[float]:
        samples = self._latency.get(version)
        if samples is None:
            samples = self._latency[version] = deque(maxlen=LATENCY_SAMPLES)
        return samples

    async def close(self) -> None:
        """Stop scoring shadows; queued rows are dropped with the rollout."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    # -- the report -------------------------------------------------------------------------

    def report(self, default_version: int | None, candidate: LoadedModel | None) -> dict[str, Any]:
        """The rollout's part of GET /models/{name}/rollout: state, split, shadow agreement and
        latency by version."""
        interval = wilson_interval(self.agreed, self.compared)
        return {
            "state": self.state(candidate).value,
            "default_version": default_version,
            "candidate": self.candidate,
            "traffic_percent": self.config.traffic_percent,
            "shadow_percent": self.config.shadow_percent,
            "sticky_header": self.config.sticky_header,
            "halt_reason": self.halt_reason,
            "answered": {str(v): n for v, n in sorted(self.answered.items())},
            "shadow": {
                "compared": self.compared,
                "agreed": self.agreed,
                "disagreed": self.compared - self.agreed,
                "errors": self.errors,
                "dropped": self.dropped,
                "agreement": round(self.agreed / self.compared, 4) if self.compared else None,
                "agreement_ci95": [round(v, 4) for v in interval] if interval else None,
                "mean_abs_diff": (
                    self._abs_diff_sum / self._abs_diff_rows if self._abs_diff_rows else None
                ),
            },
            "latency_ms": {
                str(v): _percentiles(samples) for v, samples in sorted(self._latency.items())
            },
        }


def _percentiles(samples: deque[float]) -> dict[str, float] | None:
    if not samples:
        return None
    p50, p99 = np.percentile(np.fromiter(samples, float), [50, 99]) * 1000
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3)}


def _slice(answer: Predictions, start: int, end: int) -> Predictions:
    """Rows start to end of `answer`, as an answer of the same kind."""
    return type(answer)(
        **{f.name: _cut(getattr(answer, f.name), start, end) for f in fields(answer)}
    )


def _cut(values: Any, start: int, end: int) -> Any:
    if isinstance(values, dict):  # outputs by name, one entry per row each
        return {name: rows[start:end] for name, rows in values.items()}
    return None if values is None else values[start:end]


def _joined(answers: Sequence[Predictions]) -> Predictions:
    """Answers for consecutive rows as one answer (all of one model version, one shape)."""
    if len(answers) == 1:
        return answers[0]
    first = answers[0]
    return type(first)(
        **{f.name: _join([getattr(a, f.name) for a in answers]) for f in fields(first)}
    )


def _join(parts: list[Any]) -> Any:
    if parts[0] is None:
        return None
    if isinstance(parts[0], dict):
        return {name: [v for part in parts for v in part[name]] for name in parts[0]}
    return [v for part in parts for v in part]
