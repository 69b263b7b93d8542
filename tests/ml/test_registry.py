"""ml.registry: what a sync loads and unloads, default versions, and what resolve() answers."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from onnx_factories import (
    write_garbage,
    write_iris_classifier,
    write_model_toml,
    write_raw_model,
    write_regressor,
)
from registry_helpers import rescan

import ml.registry
from ml.errors import InvalidInput, ModelNotFound, ModelNotReady
from ml.files import SAMPLES_MAX_BYTES
from ml.model import LoadedModel
from ml.registry import ModelRegistry, ReloadReport, VersionState
from ml.store import ModelDir, StoreScanner


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "models_store"
    root.mkdir()
    return root


def iris(store: Path, version: int, n_estimators: int = 5, **kwargs: Any) -> Path:
    """Version `version` of model "iris"; each `n_estimators` gives a different file."""
    return write_iris_classifier(store / "iris" / str(version), n_estimators=n_estimators, **kwargs)


def toml(store: Path, text: str, model: str = "iris") -> None:
    write_model_toml(store / model, text)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def new_registry(store: Path, default_model: str | None = None) -> ModelRegistry:
    return ModelRegistry(StoreScanner(store), default_model=default_model)


def states(registry: ModelRegistry, name: str = "iris") -> dict[int, VersionState]:
    return {v: s.state for v, s in sorted(registry.get(name).versions.items())}


def served(registry: ModelRegistry, name: str = "iris") -> int:
    """The version a request naming no version gets."""
    return registry.resolve(name, None).version


class GatedLoads:
    """Makes load_model wait, for one version, until the test opens the gate."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, version: int) -> None:
        self.version = version
        self.started = threading.Event()
        self.gate = threading.Event()
        self._real = ml.registry.load_model
        monkeypatch.setattr(ml.registry, "load_model", self._load)

    def _load(self, name: str, version: int, *args: Any) -> LoadedModel:
        if version == self.version:
            self.started.set()
            if not self.gate.wait(5):
                raise TimeoutError("the test never opened the gate")
        return self._real(name, version, *args)

    async def wait_started(self) -> None:
        assert await asyncio.to_thread(self.started.wait, 5), "the gated load never started"


# -- start-up and version policies -------------------------------------------------------------


def test_startup_sync_loads_versions(store: Path) -> None:
    iris(store, 1)
    iris(store, 2)
    toml(store, 'version_policy = "all"\n')
    write_regressor(store / "diabetes" / "1")

    async def scenario() -> None:
        registry = new_registry(store)
        assert not registry.ready
        report = await rescan(registry)
        assert registry.ready
        assert registry.scanned
        assert sorted(report.loaded, key=str) == sorted(
            [
                {"model": "iris", "version": 1},
                {"model": "iris", "version": 2},
                {"model": "diabetes", "version": 1},
            ],
            key=str,
        )
        assert report.unloaded == report.failed == []
        assert [entry.name for entry in registry] == ["diabetes", "iris"]
        assert states(registry) == {1: VersionState.AVAILABLE, 2: VersionState.AVAILABLE}
        model = registry.resolve("iris", 1)
        assert (model.name, model.version) == ("iris", 1)
        assert served(registry) == 2
        assert registry.get("iris").default_version == 2

    run(scenario)


@pytest.mark.parametrize(
    ("policy", "loaded", "default"),
    [
        (None, [3], 3),
        ('version_policy = "latest:1"\n', [3], 3),
        ('version_policy = "latest:2"\n', [2, 3], 3),
        ('version_policy = "latest:9"\n', [1, 2, 3], 3),
        ('version_policy = "all"\n', [1, 2, 3], 3),
        ('version_policy = "specific:1,3"\n', [1, 3], 3),
        ('version_policy = "specific:1,2"\n', [1, 2], 2),
        ('version_policy = "specific:1,7"\n', [1], 1),
    ],
)
def test_version_policy(store: Path, policy: str | None, loaded: list[int], default: int) -> None:
    for version in (1, 2, 3):
        iris(store, version)
    if policy is not None:
        toml(store, policy)

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        assert states(registry) == dict.fromkeys(loaded, VersionState.AVAILABLE)
        assert served(registry) == default
        for version in {1, 2, 3} - set(loaded):
            with pytest.raises(ModelNotFound, match=f"has no version {version}"):
                registry.resolve("iris", version)

    run(scenario)


def test_default_is_the_highest_available_version(store: Path) -> None:
    iris(store, 1)
    iris(store, 2)
    write_garbage(store / "iris" / "3")
    toml(store, 'version_policy = "all"\n')

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        assert states(registry)[3] is VersionState.FAILED
        assert served(registry) == 2
        assert registry.get("iris").default_version == 2

    run(scenario)


def test_pinned_default_version(store: Path) -> None:
    for version in (1, 2, 3):
        iris(store, version)
    toml(store, 'version_policy = "all"\ndefault_version = 2\n')

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        assert served(registry) == 2
        assert registry.resolve("iris", 3).version == 3
        assert registry.get("iris").default_version == 2

    run(scenario)


def test_pinned_version_is_loaded_outside_latest_n(store: Path) -> None:
    for version in (1, 2, 3):
        iris(store, version)
    toml(store, 'version_policy = "latest:1"\ndefault_version = 1\n')

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        assert states(registry) == {1: VersionState.AVAILABLE, 3: VersionState.AVAILABLE}
        assert served(registry) == 1
        # A new version joins the newest N but the pin still decides the default.
        iris(store, 4)
        await rescan(registry)
        assert states(registry) == {1: VersionState.AVAILABLE, 4: VersionState.AVAILABLE}
        assert served(registry) == 1

    run(scenario)


def test_pinned_version_that_is_not_available(store: Path) -> None:
    iris(store, 1)
    toml(store, "default_version = 5\n")

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        with pytest.raises(
            ModelNotReady, match="default version 5 of model 'iris' is not available"
        ):
            registry.resolve("iris", None)
        assert registry.resolve("iris", 1).version == 1
        assert registry.get("iris").default_version == 5

    run(scenario)


# -- failures ----------------------------------------------------------------------------------


def test_failed_newest_version_leaves_the_previous_one_serving(store: Path) -> None:
    iris(store, 1)
    write_garbage(store / "iris" / "2")

    async def scenario() -> None:
        registry = new_registry(store)
        report = await rescan(registry)
        assert states(registry) == {1: VersionState.AVAILABLE, 2: VersionState.FAILED}
        assert served(registry) == 1
        status = registry.get("iris").versions[2]
        assert status.model is None
        assert status.error is not None
        assert "onnxruntime cannot load it" in status.error
        assert report.loaded == [{"model": "iris", "version": 1}]
        assert [(f["model"], f["version"]) for f in report.failed] == [("iris", 2)]
        assert "onnxruntime cannot load it" in str(report.failed[0]["error"])
        # Nothing changed on disk: the failure is not retried or reported again.
        report = await rescan(registry)
        assert report.loaded == report.failed == report.unloaded == []

    run(scenario)


def test_failed_new_version_while_serving_then_fixed(store: Path) -> None:
    iris(store, 1)

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        first = registry.resolve("iris", None)
        write_garbage(store / "iris" / "2")
        report = await rescan(registry)
        assert [(f["model"], f["version"]) for f in report.failed] == [("iris", 2)]
        assert registry.resolve("iris", None) is first
        assert states(registry) == {1: VersionState.AVAILABLE, 2: VersionState.FAILED}
        # The file is replaced: retried, served, and the older version falls out of latest:1.
        shutil.rmtree(store / "iris" / "2")
        iris(store, 2)
        report = await rescan(registry)
        assert report.loaded == [{"model": "iris", "version": 2}]
        assert report.unloaded == [{"model": "iris", "version": 1}]
        assert states(registry) == {2: VersionState.AVAILABLE}
        assert served(registry) == 2

    run(scenario)


def test_failed_reload_keeps_serving_the_earlier_load(store: Path) -> None:
    iris(store, 1)

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        first = registry.resolve("iris", 1)
        write_garbage(store / "iris" / "1")
        report = await rescan(registry)
        assert [(f["model"], f["version"]) for f in report.failed] == [("iris", 1)]
        status = registry.get("iris").versions[1]
        assert status.state is VersionState.AVAILABLE
        assert status.error is not None
        assert "still serving the earlier load" in status.error
        assert registry.resolve("iris", None) is first
        # Fixed again: reloaded as a new model object.
        iris(store, 1, n_estimators=3)
        report = await rescan(registry)
        assert report.loaded == [{"model": "iris", "version": 1}]
        assert registry.resolve("iris", 1) is not first
        assert registry.get("iris").versions[1].error is None

    run(scenario)


def test_only_failed_versions(store: Path) -> None:
    write_garbage(store / "iris" / "1")

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        assert registry.scanned
        assert not registry.ready
        with pytest.raises(ModelNotReady, match="no version of model 'iris' is available") as err:
            registry.resolve("iris", None)
        assert err.value.retry_after is None
        with pytest.raises(ModelNotReady, match=r"version 1 failed to load: model\.onnx") as err:
            registry.resolve("iris", 1)
        assert err.value.retry_after is None

    run(scenario)


# -- resolve -----------------------------------------------------------------------------------


def test_resolve_errors(store: Path) -> None:
    iris(store, 1)
    write_raw_model(store / "raw" / "1")

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        with pytest.raises(
            ModelNotFound, match="model 'nope' not found; the store holds iris, raw"
        ):
            registry.resolve("nope", None)
        with pytest.raises(ModelNotFound, match="model 'iris' has no version 9; versions: 1"):
            registry.resolve("iris", 9)
        with pytest.raises(InvalidInput, match="name a model: the store holds iris, raw") as err:
            registry.resolve(None, None)
        assert [e.loc for e in err.value.errors] == [("model",)]
        with pytest.raises(ModelNotFound):
            registry.get("nope")

    run(scenario)


def test_resolve_without_a_name_in_a_store_of_one_model(store: Path) -> None:
    iris(store, 1)

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        assert registry.resolve(None, None) is registry.resolve("iris", 1)
        assert registry.resolve(None, 1).name == "iris"

    run(scenario)


def test_resolve_without_a_name_uses_default_model(store: Path) -> None:
    iris(store, 1)
    write_raw_model(store / "raw" / "1")

    async def scenario() -> None:
        registry = new_registry(store, default_model="raw")
        await rescan(registry)
        assert registry.resolve(None, None).name == "raw"
        assert registry.resolve("iris", None).name == "iris"
        missing = new_registry(store, default_model="gone")
        await rescan(missing)
        with pytest.raises(ModelNotFound, match="model 'gone' not found"):
            missing.resolve(None, None)

    run(scenario)


def test_resolve_before_the_first_sync(store: Path) -> None:
    iris(store, 1)

    async def scenario() -> None:
        registry = new_registry(store)
        assert not registry.ready
        for name in (None, "iris"):
            with pytest.raises(ModelNotReady, match="still loading") as err:
                registry.resolve(name, None)
            assert err.value.retry_after == 1.0

    run(scenario)


def test_ready_needs_a_serving_version(store: Path) -> None:
    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        assert registry.scanned
        assert not registry.ready  # an empty store
        iris(store, 1)
        await rescan(registry)
        assert registry.ready

    run(scenario)


# -- changes on disk ---------------------------------------------------------------------------


def test_removed_version_is_unloaded(store: Path) -> None:
    iris(store, 1)
    iris(store, 2)
    toml(store, 'version_policy = "all"\n')

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        shutil.rmtree(store / "iris" / "2")
        report = await rescan(registry)
        assert report.unloaded == [{"model": "iris", "version": 2}]
        assert report.loaded == []
        assert states(registry) == {1: VersionState.AVAILABLE}
        assert served(registry) == 1
        with pytest.raises(ModelNotFound):
            registry.resolve("iris", 2)

    run(scenario)


def test_removed_newest_version_brings_back_the_previous_one(store: Path) -> None:
    iris(store, 1)
    iris(store, 2)

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        assert states(registry) == {2: VersionState.AVAILABLE}
        shutil.rmtree(store / "iris" / "2")
        report = await rescan(registry)
        assert report.unloaded == [{"model": "iris", "version": 2}]
        assert report.loaded == [{"model": "iris", "version": 1}]
        assert served(registry) == 1

    run(scenario)


def test_removed_model_is_unloaded(store: Path) -> None:
    iris(store, 1)
    write_raw_model(store / "raw" / "1")

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        shutil.rmtree(store / "raw")
        report = await rescan(registry)
        assert report.unloaded == [{"model": "raw", "version": 1}]
        assert [entry.name for entry in registry] == ["iris"]
        with pytest.raises(ModelNotFound):
            registry.resolve("raw", None)
        assert registry.resolve(None, None).name == "iris"  # one model left

    run(scenario)


def test_removed_failed_version_is_forgotten(store: Path) -> None:
    iris(store, 1)
    write_garbage(store / "iris" / "2")

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        shutil.rmtree(store / "iris" / "2")
        report = await rescan(registry)
        assert report.unloaded == []  # nothing was loaded
        assert states(registry) == {1: VersionState.AVAILABLE}

    run(scenario)


def test_unchanged_store_changes_nothing(store: Path) -> None:
    iris(store, 1)

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        first = registry.resolve("iris", 1)
        report = await rescan(registry)
        assert report.loaded == report.unloaded == report.failed == []
        assert registry.resolve("iris", 1) is first

    run(scenario)


def test_changed_model_file_is_reloaded(store: Path) -> None:
    iris(store, 1)

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        first = registry.resolve("iris", 1)
        iris(store, 1, n_estimators=3)
        report = await rescan(registry)
        assert report.loaded == [{"model": "iris", "version": 1}]
        assert report.unloaded == []
        second = registry.resolve("iris", 1)
        assert second is not first
        assert registry.resolve("iris", None) is second

    run(scenario)


def test_changed_metadata_is_reloaded(store: Path) -> None:
    iris(store, 1)

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        (store / "iris" / "1" / "metadata.json").write_text('{"labels": ["a", "b", "c"]}')
        await rescan(registry)
        assert registry.resolve("iris", 1).labels == ("a", "b", "c")

    run(scenario)


def test_config_change_reloads(store: Path) -> None:
    iris(store, 1)

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        first = registry.resolve("iris", 1)
        assert first.config.onnxruntime.intra_op_num_threads == 1
        toml(store, "[onnxruntime]\nintra_op_num_threads = 2\n")
        report = await rescan(registry)
        assert report.loaded == [{"model": "iris", "version": 1}]
        second = registry.resolve("iris", 1)
        assert second is not first
        assert second.config.onnxruntime.intra_op_num_threads == 2
        assert second.session.get_session_options().intra_op_num_threads == 2
        assert registry.get("iris").config == second.config

    run(scenario)


def test_config_change_of_policy(store: Path) -> None:
    for version in (1, 2, 3):
        iris(store, version)

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        assert list(states(registry)) == [3]
        toml(store, 'version_policy = "all"\n')
        await rescan(registry)
        assert list(states(registry)) == [1, 2, 3]
        toml(store, 'version_policy = "latest:2"\n')
        report = await rescan(registry)
        assert report.unloaded == [{"model": "iris", "version": 1}]
        assert list(states(registry)) == [2, 3]
        toml(store, 'version_policy = "latest:2"\ndefault_version = 2\n')
        await rescan(registry)
        assert served(registry) == 2

    run(scenario)


def test_bad_model_toml_on_first_sight(store: Path) -> None:
    iris(store, 1)
    toml(store, 'version_policy = "newest"\n')

    async def scenario() -> None:
        registry = new_registry(store)
        report = await rescan(registry)
        entry = registry.get("iris")
        assert entry.config is None
        assert entry.config_error is not None
        assert "version_policy" in entry.config_error
        assert entry.versions == {}
        assert report.loaded == []
        assert [(f["model"], f["version"]) for f in report.failed] == [("iris", None)]
        assert not registry.ready
        with pytest.raises(ModelNotReady):
            registry.resolve("iris", None)
        # Fixed: the model loads.
        toml(store, 'version_policy = "all"\n')
        report = await rescan(registry)
        assert report.loaded == [{"model": "iris", "version": 1}]
        assert registry.get("iris").config_error is None
        assert registry.ready

    run(scenario)


def test_bad_model_toml_later_keeps_the_previous_config(store: Path) -> None:
    iris(store, 1)
    iris(store, 2)
    toml(store, 'version_policy = "all"\n')

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        config = registry.get("iris").config
        models = [registry.resolve("iris", v) for v in (1, 2)]
        toml(store, 'version_policy = "all"\n[batching\n')
        report = await rescan(registry)
        entry = registry.get("iris")
        assert entry.config == config
        assert entry.config_error is not None
        assert "bad TOML syntax" in entry.config_error
        assert [(f["model"], f["version"]) for f in report.failed] == [("iris", None)]
        assert report.loaded == report.unloaded == []
        assert [registry.resolve("iris", v) for v in (1, 2)] == models
        # The bad file is reported once, not on every sync.
        assert (await rescan(registry)).failed == []

    run(scenario)


def test_unsettled_entries_are_left_alone(store: Path) -> None:
    iris(store, 1)

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        first = registry.resolve("iris", 1)
        iris(store, 2)
        iris(store, 1, n_estimators=3)
        toml(store, 'version_policy = "all"\n')
        found = registry.scanner.scan()
        report = await registry.sync(found, unsettled={("iris", 2), ("iris", 1), ("iris", None)})
        assert report.loaded == report.unloaded == report.failed == []
        assert states(registry) == {1: VersionState.AVAILABLE}
        assert registry.resolve("iris", None) is first
        assert str(registry.get("iris").config.version_policy) == "latest:1"
        # Once settled, everything is applied.
        report = await registry.sync(found)
        assert states(registry) == {1: VersionState.AVAILABLE, 2: VersionState.AVAILABLE}
        assert registry.resolve("iris", 1) is not first

    run(scenario)


def test_unsettled_newer_version_does_not_unload_the_serving_one(store: Path) -> None:
    iris(store, 1)

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        iris(store, 2)
        await registry.sync(registry.scanner.scan(), unsettled={("iris", 2)})
        assert states(registry) == {1: VersionState.AVAILABLE}
        assert served(registry) == 1

    run(scenario)


# -- no gap while loading or unloading ---------------------------------------------------------


def test_requests_are_served_while_a_new_version_loads(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    iris(store, 1)
    gated = GatedLoads(monkeypatch, version=2)

    async def scenario() -> None:
        registry = new_registry(store)
        gated.gate.set()
        await rescan(registry)
        gated.gate.clear()
        iris(store, 2)
        sync = asyncio.create_task(rescan(registry))
        await gated.wait_started()
        assert served(registry) == 1
        assert states(registry) == {1: VersionState.AVAILABLE, 2: VersionState.LOADING}
        with pytest.raises(ModelNotReady, match="version 2 is loading") as err:
            registry.resolve("iris", 2)
        assert err.value.retry_after == 1.0
        gated.gate.set()
        report = await sync
        assert report.loaded == [{"model": "iris", "version": 2}]
        assert served(registry) == 2

    run(scenario)


def test_requests_are_served_while_a_changed_version_reloads(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    iris(store, 1)
    gated = GatedLoads(monkeypatch, version=1)

    async def scenario() -> None:
        registry = new_registry(store)
        gated.gate.set()
        await rescan(registry)
        first = registry.resolve("iris", 1)
        gated.gate.clear()
        gated.started.clear()
        iris(store, 1, n_estimators=3)
        sync = asyncio.create_task(rescan(registry))
        await gated.wait_started()
        assert registry.resolve("iris", None) is first
        assert registry.resolve("iris", 1) is first
        gated.gate.set()
        await sync
        assert registry.resolve("iris", 1) is not first

    run(scenario)


def test_removing_the_serving_version_leaves_no_gap(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # latest:1 serves 2; when 2 is removed, 1 must load before requests lose their default.
    iris(store, 1)
    iris(store, 2)
    gated = GatedLoads(monkeypatch, version=1)

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        assert states(registry) == {2: VersionState.AVAILABLE}
        shutil.rmtree(store / "iris" / "2")
        sync = asyncio.create_task(rescan(registry))
        await gated.wait_started()
        try:
            model = registry.resolve("iris", None)  # while version 1 loads
        finally:
            gated.gate.set()
            await sync
        assert model.version == 2
        assert served(registry) == 1

    run(scenario)


def test_close_releases_everything(store: Path) -> None:
    iris(store, 1)

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        await registry.close()
        assert list(registry) == []

    run(scenario)


# -- every store entry is untrusted: one bad entry fails only itself ---------------------------

NESTED_TOML = "x = " + "[" * 5000 + "]" * 5000 + "\n"


def test_nested_model_toml_fails_its_model_alone(store: Path) -> None:
    """tomllib recurses once per array: the RecursionError is that model's error."""
    iris(store, 1)
    write_regressor(store / "diabetes" / "1")
    toml(store, NESTED_TOML, model="diabetes")

    async def scenario() -> None:
        registry = new_registry(store)
        report = await rescan(registry)
        assert report.loaded == [{"model": "iris", "version": 1}]
        assert registry.get("diabetes").config_error == "model.toml: nested too deeply to read"
        assert registry.ready and served(registry) == 1
        # Later changes still apply, to the others and to the broken model once fixed.
        iris(store, 2)
        toml(store, "", model="diabetes")
        report = await rescan(registry)
        assert sorted((e["model"], e["version"]) for e in report.loaded) == [
            ("diabetes", 1),
            ("iris", 2),
        ]
        assert registry.get("diabetes").config_error is None

    run(scenario)


def test_version_linked_to_itself_fails_alone_and_serves_once_fixed(store: Path) -> None:
    iris(store, 1)
    (store / "iris" / "9").symlink_to("9")

    async def scenario() -> None:
        registry = new_registry(store)
        toml(store, 'version_policy = "all"\n')
        report = await rescan(registry)
        assert report.loaded == [{"model": "iris", "version": 1}]
        assert states(registry) == {1: VersionState.AVAILABLE, 9: VersionState.FAILED}
        error = registry.get("iris").versions[9].error
        assert error == "the version folder cannot be read: Too many levels of symbolic links"
        assert served(registry) == 1
        assert (await rescan(registry)).failed == []  # unchanged: not tried (or logged) again
        (store / "iris" / "9").unlink()
        iris(store, 9)
        report = await rescan(registry)
        assert report.loaded == [{"model": "iris", "version": 9}]
        assert served(registry) == 9

    run(scenario)


def test_model_folder_that_becomes_a_loop_is_unloaded_then_served_again(
    store: Path, tmp_path: Path
) -> None:
    iris(store, 1)
    write_regressor(store / "diabetes" / "1")

    async def scenario() -> None:
        registry = new_registry(store)
        await rescan(registry)
        away = tmp_path / "diabetes-away"
        (store / "diabetes").rename(away)
        (store / "diabetes").symlink_to("diabetes")
        report = await rescan(registry)
        assert report.unloaded == [{"model": "diabetes", "version": 1}]
        entry = registry.get("diabetes")
        assert entry.config_error == (
            "the model folder cannot be read: Too many levels of symbolic links"
        )
        assert entry.versions == {}
        with pytest.raises(ModelNotReady):
            registry.resolve("diabetes", None)
        assert served(registry) == 1
        assert (await rescan(registry)).failed == []  # reported once
        (store / "diabetes").unlink()
        away.rename(store / "diabetes")
        report = await rescan(registry)
        assert report.loaded == [{"model": "diabetes", "version": 1}]
        assert registry.get("diabetes").config_error is None

    run(scenario)


def test_special_and_oversized_files_fail_their_version(store: Path) -> None:
    """A FIFO, a link to /dev/zero, a link out of the store, a samples.json over its limit."""
    iris(store, 1)
    os.mkfifo(iris(store, 2) / "metadata.json.fifo")
    (store / "iris" / "2" / "metadata.json").unlink()
    (store / "iris" / "2" / "metadata.json.fifo").rename(store / "iris" / "2" / "metadata.json")
    (iris(store, 3) / "samples.json").symlink_to("/dev/zero")
    (iris(store, 4) / "metadata.json").unlink()
    (store / "iris" / "4" / "metadata.json").symlink_to(store.parent / "secret.json")
    (store.parent / "secret.json").write_text("{}")
    (iris(store, 5) / "samples.json").write_bytes(b" " * (SAMPLES_MAX_BYTES + 1))
    toml(store, 'version_policy = "all"\n')

    async def scenario() -> None:
        registry = new_registry(store)
        report = await asyncio.wait_for(rescan(registry), 30)
        assert report.loaded == [{"model": "iris", "version": 1}]
        errors = {v: s.error for v, s in registry.get("iris").versions.items() if s.error}
        assert errors == {
            2: "cannot read the version: metadata.json is a FIFO, not a regular file",
            3: "cannot read the version: samples.json is a link to outside the model store",
            4: "cannot read the version: metadata.json is a link to outside the model store",
            5: f"samples.json: cannot read: samples.json is {SAMPLES_MAX_BYTES + 1:,} bytes, "
            "over the 1 MiB limit for samples.json",
        }
        assert served(registry) == 1

    run(scenario)


def test_any_failure_of_one_model_is_contained_and_logged_once(
    store: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    iris(store, 1)
    write_regressor(store / "diabetes" / "1")
    registry = new_registry(store)
    real = registry._apply_model

    async def apply_model(model_dir: ModelDir, unsettled: Any, report: ReloadReport) -> None:
        if model_dir.name == "diabetes":
            raise RecursionError("maximum recursion depth exceeded")
        await real(model_dir, unsettled, report)

    monkeypatch.setattr(registry, "_apply_model", apply_model)

    async def scenario() -> None:
        for _ in range(3):
            report = await rescan(registry)
            assert report.failed == [
                {
                    "model": "diabetes",
                    "version": None,
                    "error": "unexpected error: RecursionError('maximum recursion depth exceeded')",
                }
            ]
        assert served(registry) == 1 and registry.ready

    with caplog.at_level("ERROR", logger="ml.registry"):
        run(scenario)
    assert [r.getMessage() for r in caplog.records] == [
        "model diabetes: unexpected error: RecursionError('maximum recursion depth exceeded')"
    ]
