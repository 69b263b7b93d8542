"""ml.watch: a version is loaded once two looks agree on its files; reload_now loads at once."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from onnx_factories import write_iris_classifier, write_model_toml

from ml.errors import ModelNotFound
from ml.registry import ModelRegistry, VersionState
from ml.store import StoreScanner
from ml.watch import StoreWatcher


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "models_store"
    root.mkdir()
    return root


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def watcher(store: Path, interval_s: float = 0) -> StoreWatcher:
    return StoreWatcher(ModelRegistry(StoreScanner(store)), interval_s)


def versions(watch: StoreWatcher, name: str = "iris") -> dict[int, VersionState]:
    try:
        entry = watch.registry.get(name)
    except ModelNotFound:
        return {}
    return {v: s.state for v, s in sorted(entry.versions.items())}


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait, polling, until `condition()` holds; fail after `timeout_s`."""
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


def bump_mtime(path: Path, step_ns: int) -> None:
    """Change a file's mtime without touching its bytes, as a copy still in progress would."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + step_ns))


def test_reload_now_loads_at_once(store: Path) -> None:
    write_iris_classifier(store / "iris" / "1")

    async def scenario() -> None:
        watch = watcher(store)
        report = await watch.reload_now()
        assert report.loaded == [{"model": "iris", "version": 1}]
        assert versions(watch) == {1: VersionState.AVAILABLE}
        assert watch.registry.ready

    run(scenario)


def test_new_version_is_loaded_on_the_second_look(store: Path) -> None:
    write_iris_classifier(store / "iris" / "1")

    async def scenario() -> None:
        watch = watcher(store)
        report = await watch.poll_once()
        assert report.loaded == []
        assert versions(watch) == {}
        assert watch.registry.scanned
        assert not watch.registry.ready
        report = await watch.poll_once()
        assert report.loaded == [{"model": "iris", "version": 1}]
        assert watch.registry.ready

    run(scenario)


def test_version_added_after_start_up_waits_one_look(store: Path) -> None:
    write_iris_classifier(store / "iris" / "1")

    async def scenario() -> None:
        watch = watcher(store)
        await watch.reload_now()
        assert (await watch.poll_once()).loaded == []  # nothing new
        write_iris_classifier(store / "iris" / "2")
        report = await watch.poll_once()
        assert report.loaded == report.unloaded == []
        assert watch.registry.resolve("iris", None).version == 1
        report = await watch.poll_once()
        assert report.loaded == [{"model": "iris", "version": 2}]
        assert report.unloaded == [{"model": "iris", "version": 1}]
        assert watch.registry.resolve("iris", None).version == 2

    run(scenario)


def test_file_that_keeps_changing_is_not_loaded(store: Path) -> None:
    write_iris_classifier(store / "iris" / "1")

    async def scenario() -> None:
        watch = watcher(store)
        await watch.reload_now()
        model_file = write_iris_classifier(store / "iris" / "2") / "model.onnx"
        for step in range(1, 5):
            report = await watch.poll_once()
            assert report.loaded == report.failed == []
            assert versions(watch) == {1: VersionState.AVAILABLE}
            bump_mtime(model_file, step * 1_000_000)
        await watch.poll_once()  # first look at the final state
        assert versions(watch) == {1: VersionState.AVAILABLE}
        report = await watch.poll_once()
        assert report.loaded == [{"model": "iris", "version": 2}]

    run(scenario)


def test_changing_file_of_a_serving_version_is_reloaded_once_settled(store: Path) -> None:
    write_iris_classifier(store / "iris" / "1")

    async def scenario() -> None:
        watch = watcher(store)
        await watch.reload_now()
        first = watch.registry.resolve("iris", 1)
        write_iris_classifier(store / "iris" / "1", n_estimators=3)
        assert (await watch.poll_once()).loaded == []
        assert watch.registry.resolve("iris", 1) is first
        assert (await watch.poll_once()).loaded == [{"model": "iris", "version": 1}]
        assert watch.registry.resolve("iris", 1) is not first

    run(scenario)


def test_changing_model_toml_waits_until_settled(store: Path) -> None:
    write_iris_classifier(store / "iris" / "1")
    write_iris_classifier(store / "iris" / "2")

    async def scenario() -> None:
        watch = watcher(store)
        await watch.reload_now()
        assert versions(watch) == {2: VersionState.AVAILABLE}
        write_model_toml(store / "iris", 'version_policy = "all"\n')
        await watch.poll_once()
        assert versions(watch) == {2: VersionState.AVAILABLE}
        await watch.poll_once()
        assert versions(watch) == {1: VersionState.AVAILABLE, 2: VersionState.AVAILABLE}

    run(scenario)


def test_removed_version_is_unloaded_on_the_next_look(store: Path) -> None:
    write_iris_classifier(store / "iris" / "1")
    write_iris_classifier(store / "iris" / "2")
    write_model_toml(store / "iris", 'version_policy = "all"\n')

    async def scenario() -> None:
        watch = watcher(store)
        await watch.reload_now()
        for path in (store / "iris" / "2").iterdir():
            path.unlink()
        (store / "iris" / "2").rmdir()
        report = await watch.poll_once()
        assert report.unloaded == [{"model": "iris", "version": 2}]

    run(scenario)


def test_staged_folder_is_loaded_after_its_rename(store: Path) -> None:
    write_iris_classifier(store / "iris" / "1")
    write_iris_classifier(store / "iris" / ".tmp-2")

    async def scenario() -> None:
        watch = watcher(store)
        await watch.reload_now()
        await watch.poll_once()
        assert versions(watch) == {1: VersionState.AVAILABLE}
        (store / "iris" / ".tmp-2").rename(store / "iris" / "2")
        await watch.poll_once()
        report = await watch.poll_once()
        assert report.loaded == [{"model": "iris", "version": 2}]

    run(scenario)


def test_running_loads_then_follows_the_store(store: Path) -> None:
    write_iris_classifier(store / "iris" / "1")

    async def scenario() -> None:
        watch = watcher(store, interval_s=0.01)
        async with watch.running() as task:
            assert not task.done()
            await eventually(lambda: watch.registry.ready)
            write_iris_classifier(store / "iris" / "2")
            await eventually(lambda: watch.registry.resolve("iris", None).version == 2)
        assert task.cancelled()

    run(scenario)


def test_running_with_watching_off_loads_once(store: Path) -> None:
    write_iris_classifier(store / "iris" / "1")

    async def scenario() -> None:
        watch = watcher(store, interval_s=0)
        async with watch.running() as task:
            await asyncio.wait_for(asyncio.shield(task), 5)
            assert watch.registry.ready

    run(scenario)


def test_first_scan_failure_still_marks_the_registry_scanned(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_scan() -> dict:
        raise OSError("the disk is gone")

    async def scenario() -> None:
        watch = watcher(store, interval_s=0)
        monkeypatch.setattr(watch.registry.scanner, "scan", broken_scan)
        async with watch.running() as task:
            await asyncio.wait_for(asyncio.shield(task), 5)
            assert watch.registry.scanned
            assert not watch.registry.ready

    run(scenario)


# -- a version shipped with the settings that name it -------------------------------------------


def test_a_new_version_waits_while_model_toml_is_being_changed(store: Path) -> None:
    """Seen first with the old model.toml, the version is settled one look before the rewritten
    model.toml is: it must not serve under the old settings meanwhile."""
    write_iris_classifier(store / "iris" / "1")

    async def scenario() -> None:
        watch = watcher(store)
        await watch.reload_now()
        write_iris_classifier(store / "iris" / "2")
        await watch.poll_once()  # 2 seen, not settled
        write_model_toml(store / "iris", "default_version = 1\n[rollout]\ncandidate = 2\n")
        report = await watch.poll_once()  # 2 settled, model.toml not
        assert report.loaded == []
        assert watch.registry.resolve("iris", None).version == 1
        report = await watch.poll_once()
        assert report.loaded == [{"model": "iris", "version": 2}]
        assert watch.registry.resolve("iris", None).version == 1
        assert watch.registry.rollout_report("iris")["state"] == "active"

    run(scenario)


def test_a_reload_never_sees_a_version_without_the_model_toml_written_before_it(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rewrite of model.toml and the rename of the version land in the middle of a scan,
    just after its first look at any file: the scan must see the version only with them."""
    import ml.store

    write_iris_classifier(store / "iris" / "1")
    write_iris_classifier(store / ".staged-2")
    fingerprint = ml.store._fingerprint_files
    shipped = [False]

    def racing(folder: Path, names: list[str]) -> ml.store.Fingerprint:
        looked = fingerprint(folder, names)
        if not shipped[0]:
            shipped[0] = True
            write_model_toml(store / "iris", "default_version = 1\n[rollout]\ncandidate = 2\n")
            os.rename(store / ".staged-2", store / "iris" / "2")
        return looked

    async def scenario() -> None:
        watch = watcher(store)
        await watch.reload_now()
        monkeypatch.setattr(ml.store, "_fingerprint_files", racing)
        await watch.reload_now()
        assert shipped[0]
        assert watch.registry.resolve("iris", None).version == 1
        monkeypatch.setattr(ml.store, "_fingerprint_files", fingerprint)
        await watch.reload_now()
        assert watch.registry.resolve("iris", None).version == 1
        assert watch.registry.rollout_report("iris")["state"] == "active"

    run(scenario)
