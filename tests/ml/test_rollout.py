"""ml.rollout through the registry: canary share, sticky buckets, shadow agreement, halts."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_factories import fitted_classifier, iris_rows, write_classifier, write_model_toml
from registry_helpers import rescan

from ml.observer import ServingObserver
from ml.outputs import Predictions
from ml.registry import ModelRegistry, VersionState
from ml.rollout import Rollout, bucket, compare_rows, wilson_interval
from ml.store import StoreScanner

ROWS = iris_rows(150)


class Recorder(ServingObserver):
    """An observer keeping the rollout events."""

    def __init__(self) -> None:
        self.answered: Counter[tuple[str, int]] = Counter()
        self.shadow: Counter[tuple[str, int, str]] = Counter()
        self.states: list[tuple[str, str]] = []

    def rollout_answered(self, model: str, version: int) -> None:
        self.answered[(model, version)] += 1

    def shadow_compared(self, model: str, candidate: int, outcome: str, rows: int) -> None:
        self.shadow[(model, candidate, outcome)] += rows

    def rollout_state_changed(self, model: str, state: str) -> None:
        self.states.append((model, state))


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """iris 1 (forest, classes 0/1/2) and 2 (logistic regression, same classes)."""
    root = tmp_path / "store"
    write_classifier(root / "iris" / "1", "forest", (0, 1, 2))
    write_classifier(root / "iris" / "2", "logistic", (0, 1, 2))
    return root


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


async def started(store: Path, observer: Recorder | None = None) -> ModelRegistry:
    registry = ModelRegistry(StoreScanner(store), observer=observer)
    await rescan(registry)
    return registry


def toml(store: Path, text: str) -> None:
    write_model_toml(store / "iris", text)


async def predict(
    registry: ModelRegistry, rows: list[Any], version: int | None = None, key: str | None = None
) -> tuple[int, Predictions]:
    headers = {"x-routing-key": key} if key is not None else {}
    model, result = await registry.predict(
        "iris", version, rows, ("instances",), lambda name: headers.get(name.lower())
    )
    return model.version, result


async def settle(registry: ModelRegistry, rows: int) -> dict[str, Any]:
    """The rollout's report once `rows` shadow rows are accounted for (or it halted)."""
    for _ in range(1000):
        report = registry.rollout_report("iris")
        shadow = report["shadow"]
        if shadow["compared"] + shadow["errors"] + shadow["dropped"] >= rows:
            return report
        if report["state"] == "halted":
            await asyncio.sleep(0.05)  # what was running when it halted
            return registry.rollout_report("iris")
        await asyncio.sleep(0.01)
    raise AssertionError(f"{rows} shadow rows not accounted for: {shadow}")


# -- configuration and states ------------------------------------------------------------------


def test_candidate_is_never_the_default_and_both_stay_loaded(store: Path) -> None:
    toml(store, "version_policy = 'latest:1'\n[rollout]\ncandidate = 2\n")

    async def scenario() -> None:
        registry = await started(store)
        assert {v: s.state for v, s in registry.get("iris").versions.items()} == {
            1: VersionState.AVAILABLE,
            2: VersionState.AVAILABLE,
        }
        assert registry.get("iris").default_version == 1
        assert {(await predict(registry, ROWS[:1]))[0] for _ in range(20)} == {1}  # share 0
        assert (await predict(registry, ROWS[:1], version=2))[0] == 2
        assert registry.rollout_report("iris")["state"] == "active"
        await registry.close()

    run(scenario)


def test_pending_until_the_candidate_is_available(store: Path) -> None:
    toml(store, "[rollout]\ncandidate = 3\ntraffic_percent = 100\nshadow_percent = 100\n")

    async def scenario() -> None:
        registry = await started(store)
        report = registry.rollout_report("iris")
        assert (report["state"], report["default_version"], report["candidate"]) == (
            "pending",
            2,
            3,
        )
        assert {(await predict(registry, ROWS[:1]))[0] for _ in range(10)} == {2}
        write_classifier(store / "iris" / "3", "knn", (0, 1, 2))
        await rescan(registry)
        assert registry.rollout_report("iris")["state"] == "active"
        assert (await predict(registry, ROWS[:1]))[0] == 3
        await registry.close()

    run(scenario)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default_version = 2\n[rollout]\ncandidate = 2\n", "is the default_version"),
        ("[rollout]\ncandidate = 2\ntraffic_percent = 101\n", "rollout.traffic_percent"),
        ("[rollout]\ncandidate = 2\nshadow_percent = -1\n", "rollout.shadow_percent"),
        ("[rollout]\ncandidate = 2\nmin_agreement = 1.5\n", "rollout.min_agreement"),
        ("[rollout]\ncandidate = 2\nwindow = 0\n", "rollout.window"),
        ("[rollout]\ncandidate = 0\n", "rollout.candidate"),
        ("[rollout]\ntraffic_percent = 10\n", "rollout.candidate: Field required"),
        ("[rollout]\ncandidate = 2\nsticky_header = 'two words'\n", "rollout.sticky_header"),
        ("[rollout]\ncandidate = 2\ncanary = 1\n", "rollout.canary"),
        (
            "[rollout]\ncandidate = 2\ntraffic_percent = 50\nmin_agreement = 0.95\n",
            "min_agreement needs shadow_percent above 0",
        ),
        (
            "[rollout]\ncandidate = 2\nmax_error_rate = 0.1\n",
            "max_error_rate needs traffic_percent or shadow_percent above 0",
        ),
        ("[promotion]\nversion = 2\n", "promotion.previous: Field required"),
    ],
)
def test_bad_rollout_is_a_configuration_error(store: Path, text: str, message: str) -> None:
    toml(store, text)

    async def scenario() -> None:
        registry = await started(store)
        entry = registry.get("iris")
        assert entry.config_error is not None and message in entry.config_error
        assert entry.rollout is None
        await registry.close()

    run(scenario)


# -- the split ---------------------------------------------------------------------------------


def test_traffic_share_is_within_binomial_bounds(store: Path) -> None:
    toml(store, "[rollout]\ncandidate = 2\ntraffic_percent = 10\n")
    observer = Recorder()

    async def scenario() -> None:
        registry = await started(store, observer)
        versions = Counter([(await predict(registry, ROWS[:1]))[0] for _ in range(2000)])
        # 2,000 draws at 10%: mean 200, sd 13.4; 5 sd either side.
        assert 133 <= versions[2] <= 267, versions
        assert versions[1] + versions[2] == 2000
        named = Counter([(await predict(registry, ROWS[:1], version=1))[0] for _ in range(200)])
        assert named == {1: 200}  # requests that name a version are never rerouted
        report = registry.rollout_report("iris")
        assert report["answered"] == {"1": versions[1], "2": versions[2]}
        assert observer.answered == {("iris", 1): versions[1], ("iris", 2): versions[2]}
        assert set(report["latency_ms"]) == {"1", "2"}
        await registry.close()

    run(scenario)


def test_one_sticky_key_always_gets_one_version(store: Path) -> None:
    toml(store, "[rollout]\ncandidate = 2\ntraffic_percent = 30\nsticky_header = 'X-Routing-Key'\n")

    async def scenario() -> None:
        registry = await started(store)
        seen: dict[str, set[int]] = {}
        for _ in range(5):
            for i in range(200):
                key = f"user-{i}"
                seen.setdefault(key, set()).add((await predict(registry, ROWS[:1], key=key))[0])
        assert all(len(v) == 1 for v in seen.values())
        on_candidate = sum(v == {2} for v in seen.values())
        assert on_candidate == sum(bucket("iris", f"user-{i}") < 30 for i in range(200))
        assert 30 <= on_candidate <= 90  # 200 keys at 30%
        await registry.close()

    run(scenario)


def test_buckets_do_not_depend_on_the_process() -> None:
    code = "from ml.rollout import bucket; print([bucket('iris', f'k{i}') for i in range(50)])"
    answers = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "random")
    }
    assert len(answers) == 1
    assert json.loads(answers.pop()) == [bucket("iris", f"k{i}") for i in range(50)]
    assert bucket("iris", "k1") != bucket("other", "k1") or bucket("iris", "k2") != bucket(
        "other", "k2"
    )


# -- shadow scoring ----------------------------------------------------------------------------


def test_shadow_never_changes_an_answer_and_counts_real_disagreements(store: Path) -> None:
    toml(store, "[rollout]\ncandidate = 2\nshadow_percent = 100\n")
    observer = Recorder()
    forest, logistic = (
        fitted_classifier("forest", (0, 1, 2)),
        fitted_classifier("logistic", (0, 1, 2)),
    )
    x = np.asarray(ROWS, dtype=np.float32)
    differ = int((forest.predict(x) != logistic.predict(x)).sum())
    assert differ > 0  # the test needs two versions that disagree somewhere

    async def scenario() -> None:
        registry = await started(store, observer)
        answers = []
        for start in range(0, len(ROWS), 10):
            version, result = await predict(registry, ROWS[start : start + 10])
            assert version == 1
            answers.extend(result.predictions or [])
        assert answers == forest.predict(x).tolist()  # the default's answers, row by row
        shadow = (await settle(registry, len(ROWS)))["shadow"]
        assert shadow["compared"] == len(ROWS)
        assert shadow["disagreed"] == differ
        assert shadow["agreed"] == len(ROWS) - differ
        assert shadow["errors"] == shadow["dropped"] == 0
        low, high = shadow["agreement_ci95"]
        assert low < shadow["agreement"] < high
        assert observer.shadow == {
            ("iris", 2, "agreed"): len(ROWS) - differ,
            ("iris", 2, "disagreed"): differ,
        }
        await registry.close()

    run(scenario)


def test_a_full_shadow_queue_drops_and_counts(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ml.rollout.SHADOW_QUEUE_ROWS", 6)
    toml(store, "[rollout]\ncandidate = 2\nshadow_percent = 100\n")

    async def scenario() -> None:
        registry = await started(store)
        for _ in range(10):  # nothing awaits between these: the worker cannot take any
            rollout = registry.get("iris").rollout
            assert rollout is not None
            default = registry.get("iris").default
            assert default is not None
            rollout.shadow(
                registry.get("iris").available(2),
                ROWS[:3],
                await default.predict(ROWS[:3], ("instances",)),
            )
        shadow = (await settle(registry, 30))["shadow"]
        assert shadow["dropped"] > 0
        assert shadow["compared"] + shadow["dropped"] == 30
        await registry.close()

    run(scenario)


def test_a_candidate_that_raises_is_counted_and_callers_are_unaffected(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_lookup_model(store / "iris" / "1", table_size=100)
    write_lookup_model(store / "iris" / "2", table_size=5)  # raises on values of 5 and more
    toml(store, "[rollout]\ncandidate = 2\nshadow_percent = 100\n")

    async def scenario() -> None:
        registry = await started(store)
        for value in [1.0, 7.0, 2.0, 9.0]:
            version, result = await predict(registry, [[value, 0.0]])
            assert (version, result.outputs) == (1, {"y": [[value * 10]]})
        shadow = (await settle(registry, 4))["shadow"]
        assert shadow["errors"] + shadow["compared"] == 4
        assert shadow["errors"] >= 2 and shadow["agreed"] == shadow["compared"]
        await registry.close()

    run(scenario)


# -- halts -------------------------------------------------------------------------------------


def test_low_agreement_halts_until_model_toml_changes(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = "[rollout]\ncandidate = 2\ntraffic_percent = 50\nshadow_percent = 100\n"
    toml(store, text + "min_agreement = 0.999\nwindow = 40\n")

    observer = Recorder()

    async def scenario() -> None:
        registry = await started(store, observer)
        for _ in range(20):
            await predict(registry, ROWS)
        report = await settle(registry, 10 * len(ROWS))
        assert report["state"] == "halted"
        assert "below min_agreement 0.999" in report["halt_reason"]
        assert any("halted" in r.message and r.levelno == logging.WARNING for r in caplog.records)
        assert observer.states == [("iris", "active"), ("iris", "halted")]
        compared = report["shadow"]["compared"]
        assert {(await predict(registry, ROWS[:1]))[0] for _ in range(50)} == {1}
        await asyncio.sleep(0.1)
        assert registry.rollout_report("iris")["shadow"]["compared"] == compared
        toml(store, text + "min_agreement = 0.5\nwindow = 40\n")
        await rescan(registry)
        assert registry.rollout_report("iris")["state"] == "active"
        assert observer.states[-1] == ("iris", "active")
        await registry.close()

    run(scenario)


def test_errors_beyond_max_error_rate_halt(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_lookup_model(store / "iris" / "1", table_size=100)
    write_lookup_model(store / "iris" / "2", table_size=5)
    toml(
        store,
        "[rollout]\ncandidate = 2\ntraffic_percent = 100\nmax_error_rate = 0.2\nwindow = 10\n",
    )

    async def scenario() -> None:
        registry = await started(store)
        failed = 0
        for i in range(10):
            try:
                await predict(registry, [[float(9 if i % 2 else 1), 0.0]])
            except Exception:
                failed += 1
        assert failed == 5
        report = registry.rollout_report("iris")
        assert report["state"] == "halted" and "above max_error_rate 0.2" in report["halt_reason"]
        assert {(await predict(registry, [[9.0, 0.0]]))[0] for _ in range(10)} == {1}
        await registry.close()

    run(scenario)


def test_every_state_change_is_a_log_line_and_an_observer_event(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    toml(store, "default_version = 1\n[rollout]\ncandidate = 3\n")
    observer = Recorder()

    async def scenario() -> None:
        caplog.set_level(logging.INFO, logger="ml.rollout")
        registry = await started(store, observer)
        write_classifier(store / "iris" / "3", "knn", (0, 1, 2))
        await rescan(registry)
        await rescan(registry)  # nothing changes: nothing reported
        toml(store, "default_version = 1\n")
        await rescan(registry)
        assert observer.states == [("iris", "pending"), ("iris", "active"), ("iris", "none")]
        moves = [r.message for r in caplog.records if "rollout" in r.message and "->" in r.message]
        assert len(moves) == 3
        assert "rollout none -> pending" in moves[0] and "version 3" in moves[0]
        assert "pending -> active" in moves[1] and "active -> none" in moves[2]
        await registry.close()

    run(scenario)


# -- promotion and rollback --------------------------------------------------------------------


def test_the_previous_default_stays_loaded_after_a_promotion_until_retired(store: Path) -> None:
    toml(store, "default_version = 1\n[rollout]\ncandidate = 2\n")

    async def scenario() -> None:
        registry = await started(store)
        report = registry.rollout_report("iris")
        assert (report["state"], report["rollback_restores"], report["last_promotion"]) == (
            "active",
            1,
            None,
        )
        before = registry.resolve("iris", 1)
        # Promotion: version 1 stays loaded though the policy (latest:1) no longer selects it.
        toml(store, "default_version = 2\n[promotion]\nversion = 2\nprevious = 1\n")
        changes = await rescan(registry)
        assert changes.loaded == changes.unloaded == []
        assert registry.resolve("iris", 1) is before
        assert (await predict(registry, ROWS[:1]))[0] == 2
        report = registry.rollout_report("iris")
        assert report["state"] == "none"
        assert report["last_promotion"] == {
            "version": 2,
            "previous": 1,
            "at": None,
            "previous_state": "AVAILABLE",
        }
        assert report["rollback_restores"] == 1
        # Rollback: the previous default answers at once, with nothing to load.
        toml(store, "default_version = 1\n")
        changes = await rescan(registry)
        assert changes.loaded == changes.unloaded == []
        assert (await predict(registry, ROWS[:1]))[0] == 1
        assert registry.rollout_report("iris")["rollback_restores"] is None
        # Retired (no [promotion]) with 2 the default: the policy lets 1 go.
        toml(store, "default_version = 2\n[promotion]\nversion = 2\nprevious = 1\n")
        await rescan(registry)
        toml(store, "default_version = 2\n")
        changes = await rescan(registry)
        assert changes.unloaded == [{"model": "iris", "version": 1}]
        await registry.close()

    run(scenario)


def test_a_promotion_time_is_reported(store: Path) -> None:
    toml(store, "[promotion]\nversion = 2\nprevious = 1\nat = 2026-12-03T08:00:00Z\n")

    async def scenario() -> None:
        registry = await started(store)
        promotion = registry.rollout_report("iris")["last_promotion"]
        assert promotion["at"] == "2026-12-03T08:00:00+00:00"
        await registry.close()

    run(scenario)


# -- the report --------------------------------------------------------------------------------


def test_wilson_interval_of_the_contract_example() -> None:
    low, high = wilson_interval(8950, 9012) or (0, 0)
    assert (round(low, 4), round(high, 4)) == (0.9912, 0.9946)
    assert wilson_interval(0, 0) is None
    assert wilson_interval(10, 10) is not None


def test_numbers_agree_within_the_samples_tolerance() -> None:
    default = Predictions(predictions=[100.0, 100.0, 1.0])
    candidate = Predictions(predictions=[100.005, 100.02, 1.0])
    results = compare_rows(default, candidate, 3)
    assert [r.agreed for r in results] == [True, False, True]
    assert results[1].abs_diff == pytest.approx(0.02)


def test_a_rollout_without_activity_reports_nothing_measured() -> None:
    from ml.config import RolloutConfig

    report = Rollout("m", RolloutConfig(candidate=2)).report(1, None)
    assert report["state"] == "pending"
    assert report["shadow"]["agreement"] is None and report["shadow"]["agreement_ci95"] is None


# -- helpers -----------------------------------------------------------------------------------


def write_lookup_model(folder: Path, table_size: int) -> Path:
    """x [N, 2] -> y [N, 1] = table[int(x0)] with table[i] = 10 i; onnxruntime raises when
    x0 >= table_size (an index out of bounds)."""
    graph = helper.make_graph(
        [
            helper.make_node("Slice", ["x", "zero", "one", "one"], ["first"]),
            helper.make_node("Cast", ["first"], ["index"], to=TensorProto.INT64),
            helper.make_node("Gather", ["table", "index"], ["gathered"], axis=0),
            helper.make_node("Reshape", ["gathered", "shape"], ["y"]),
        ],
        "lookup",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        initializer=[
            helper.make_tensor(
                "table", TensorProto.FLOAT, [table_size], [10.0 * i for i in range(table_size)]
            ),
            helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
            helper.make_tensor("one", TensorProto.INT64, [1], [1]),
            helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    return folder


def test_classifier_slices_compare_as_row_by_row() -> None:
    default = Predictions(
        predictions=["a", "b", "a"],
        probabilities=[{"a": 0.9, "b": 0.1}, {"a": 0.2, "b": 0.8}, {"a": 0.6, "b": 0.4}],
    )
    candidate = Predictions(
        predictions=["a", "a", "a"],
        probabilities=[{"a": 0.9, "b": 0.1}, {"a": 0.7, "b": 0.3}, {"a": 0.5, "b": 0.5}],
    )
    results = compare_rows(default, candidate, 3)
    assert [r.agreed for r in results] == [True, False, True]
    assert [r.abs_diff for r in results] == pytest.approx([0.0, 0.5, 0.1])
    other_order = Predictions(
        predictions=["a", "a", "a"],
        probabilities=[{"b": 0.1, "a": 0.9}, {"b": 0.3, "a": 0.7}, {"b": 0.5, "a": 0.5}],
    )
    assert compare_rows(default, other_order, 3) == results  # compared by key, not position
