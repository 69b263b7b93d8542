"""Which versions of which models are loaded, in what state, and which one serves by default.

All changes happen on the event loop, one `sync` at a time, so a request always sees a
consistent registry: a new version is fully loaded and warmed up in a worker thread before one
assignment makes it visible, and a replaced version is dropped only after that switch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ml.config import CONFIG_FILE, ConfigError, ModelConfig, read_model_config
from ml.errors import FieldError, InferenceFailed, InvalidInput, ModelNotFound, ModelNotReady
from ml.model import LoadedModel, ModelLoadError, load_model
from ml.observer import ServingObserver
from ml.outputs import Predictions
from ml.rollout import Rollout, RolloutState, RolloutStates
from ml.rollout_report import describe_rollout
from ml.store import Fingerprint, ModelDir, StoreScanner, VersionDir, without_store_path

log = logging.getLogger(__name__)

LOADING_RETRY_AFTER_S = 1.0
# A fingerprint no look gives: the model's settings are read again at the next look.
_UNREAD: Fingerprint = (("", -1, -1),)
T = TypeVar("T")


class VersionState(StrEnum):
    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    FAILED = "FAILED"
    UNLOADING = "UNLOADING"


@dataclass(slots=True)
class VersionStatus:
    """A version the registry knows of; `model` is set while it serves."""

    version: int
    state: VersionState
    fingerprint: Fingerprint
    error: str | None = None
    model: LoadedModel | None = None


@dataclass(slots=True)
class ModelEntry:
    """A model of the store: its settings, its versions, and the version that serves by default."""

    name: str
    config: ModelConfig | None
    config_fingerprint: Fingerprint
    config_error: str | None = None
    versions: dict[int, VersionStatus] = field(default_factory=dict)
    default: LoadedModel | None = None
    rollout: Rollout | None = None
    states: RolloutStates | None = None
    # True while a sync changes this model: a default that is not available yet (a new pin
    # still loading) leaves the current one serving until the sync ends.
    settling: bool = False

    def refresh_default(self) -> None:
        """The pinned version if set, else the highest available one other than a rollout's
        candidate."""
        available = {
            v: s.model
            for v, s in self.versions.items()
            if s.state is VersionState.AVAILABLE and s.model is not None
        }
        pinned = self.config.default_version if self.config else None
        if self.rollout is not None:
            available.pop(self.rollout.candidate, None)
        if pinned is not None:
            chosen = available.get(pinned)
        else:
            chosen = available[max(available)] if available else None
        if chosen is None and self.settling and self.default is not None:
            # The version that served (or its reload) serves on until the sync ends.
            chosen = available.get(self.default.version)
        self.default = chosen

    def available(self, version: int) -> LoadedModel | None:
        """The loaded model of `version` while it is AVAILABLE."""
        status = self.versions.get(version)
        return (
            status.model if status is not None and status.state is VersionState.AVAILABLE else None
        )

    @property
    def default_version(self) -> int | None:
        if self.config and self.config.default_version is not None:
            return self.config.default_version
        return self.default.version if self.default else None


@dataclass(frozen=True, slots=True)
class ReloadReport:
    """What one sync changed; each item names a model and a version."""

    loaded: list[dict[str, object]] = field(default_factory=list)
    unloaded: list[dict[str, object]] = field(default_factory=list)
    failed: list[dict[str, object]] = field(default_factory=list)


class ModelRegistry:
    """Loaded models by name and version; the only writer is `sync`."""

    def __init__(
        self,
        scanner: StoreScanner,
        default_model: str | None = None,
        observer: ServingObserver | None = None,
    ) -> None:
        self.scanner = scanner
        self.default_model = default_model
        self.observer = observer
        self._models: dict[str, ModelEntry] = {}
        self._lock = asyncio.Lock()
        self.scanned = False
        # The last unexpected failure of each model's sync, logged once rather than every poll.
        self._sync_failures: dict[str, str] = {}
        self.after_sync: list[Callable[[], None]] = []
        """Called after every sync, whatever it changed: for readers that keep what they read
        from the entries (the prediction log's shares)."""

    # -- reading, on the request path -------------------------------------------------------

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(sorted(self._models.values(), key=lambda e: e.name))

    def get(self, name: str) -> ModelEntry:
        entry = self._models.get(name)
        if entry is None:
            known = ", ".join(sorted(self._models)) or "no models"
            raise ModelNotFound(f"model {name!r} not found; the store holds {known}")
        return entry

    @property
    def ready(self) -> bool:
        """The first scan is done and at least one version serves."""
        return self.scanned and any(_serving(e) for e in self._models.values())

    def resolve(self, name: str | None, version: int | None) -> LoadedModel:
        """The model version a request asked for, or the error that tells the caller why not."""
        if not self.scanned and (name is None or name not in self._models):
            raise ModelNotReady("the model store is still loading", LOADING_RETRY_AFTER_S)
        if name is None:
            name = self._implicit_model()
        entry = self.get(name)
        if version is None:
            if entry.default is not None:
                return entry.default
            loading = any(s.state is VersionState.LOADING for s in entry.versions.values())
            pinned = entry.config.default_version if entry.config else None
            reason = (
                f"default version {pinned} of model {name!r} is not available"
                if pinned is not None
                else f"no version of model {name!r} is available"
            )
            raise ModelNotReady(reason, LOADING_RETRY_AFTER_S if loading else None)
        status = entry.versions.get(version)
        if status is None or status.state is VersionState.UNLOADING:
            served = ", ".join(str(v) for v in sorted(entry.versions)) or "none"
            raise ModelNotFound(f"model {name!r} has no version {version}; versions: {served}")
        if status.state is VersionState.LOADING and status.model is None:
            raise ModelNotReady(
                f"model {name!r} version {version} is loading", LOADING_RETRY_AFTER_S
            )
        if status.model is None:
            raise ModelNotReady(f"model {name!r} version {version} failed to load: {status.error}")
        return status.model

    async def predict(
        self,
        name: str | None,
        version: int | None,
        rows: Sequence[Any],
        loc: tuple[str | int, ...],
        header: Callable[[str], str | None] | None = None,
    ) -> tuple[LoadedModel, Predictions]:
        """Answer `rows` with the version asked for; a request naming no version goes through
        the model's rollout, if it has one, and may be scored in its shadow. `header(name)`
        gives the value of a request header (or gRPC metadata), for sticky routing."""
        model = self.resolve(name, version)
        entry = self._models[model.name] if version is None else None
        if entry is None or entry.rollout is None:
            return model, await model.predict(rows, loc)
        rollout, candidate = entry.rollout, entry.available(entry.rollout.candidate)
        model = self._pick(entry, rollout, candidate, header)
        result = await _answered(rollout, model, candidate, model.predict(rows, loc))
        if model is not candidate:
            rollout.shadow(candidate, rows, result)
        return model, result

    async def infer(
        self,
        name: str,
        version: int | None,
        arrays: Mapping[str, np.ndarray],
        header: Callable[[str], str | None] | None = None,
    ) -> tuple[LoadedModel, dict[str, Any]]:
        """Whole input tensors (V2 over HTTP or gRPC) to raw outputs by name. A request naming
        no version follows the model's rollout split; tensors are not shadowed (agreement is
        judged on answers as /predict gives them)."""
        model = self.resolve(name, version)
        entry = self._models[model.name] if version is None else None
        if entry is None or entry.rollout is None:
            return model, await model.infer_arrays(arrays)
        rollout, candidate = entry.rollout, entry.available(entry.rollout.candidate)
        model = self._pick(entry, rollout, candidate, header)
        return model, await _answered(rollout, model, candidate, model.infer_arrays(arrays))

    @staticmethod
    def _pick(
        entry: ModelEntry,
        rollout: Rollout,
        candidate: LoadedModel | None,
        header: Callable[[str], str | None] | None,
    ) -> LoadedModel:
        sticky = rollout.config.sticky_header
        key = header(sticky) if sticky is not None and header is not None else None
        model = rollout.pick(entry.default, candidate, key)
        if model is None:  # resolve() found a default a moment ago; nothing awaited since
            raise ModelNotReady(f"no version of model {entry.name!r} is available")
        return model

    def rollout_report(self, name: str) -> dict[str, Any]:
        """GET /models/{name}/rollout: the state and counts of the model's rollout."""
        return describe_rollout(self.get(name))

    def _implicit_model(self) -> str:
        if self.default_model is not None:
            return self.default_model
        if len(self._models) == 1:
            return next(iter(self._models))
        known = ", ".join(sorted(self._models))
        message = f"name a model: the store holds {known}"
        raise InvalidInput(message, [FieldError(("model",), message)])

    # -- writing, from start-up, the watcher and /admin/reload ------------------------------

    async def sync(
        self, found: dict[str, ModelDir], unsettled: Collection[tuple[str, int | None]] = ()
    ) -> ReloadReport:
        """Make the registry match `found`; entries in `unsettled` (files still being written,
        as `(model, version)`, or `(model, None)` for its model.toml) are left as they are."""
        report = ReloadReport()
        async with self._lock:
            for model_dir in found.values():
                try:
                    await self._sync_model(model_dir, unsettled, report)
                except Exception as exc:  # one model's failure must not stop the others
                    self._sync_failed(model_dir.name, exc, report)
                else:
                    self._sync_failures.pop(model_dir.name, None)
            removed = [n for n in self._models if n not in found]
            for name in removed:
                entry = self._models[name]
                for version in list(entry.versions):
                    await self._unload(entry, version, report)
                del self._models[name]
                self._sync_failures.pop(name, None)
                log.info("model %s removed from the store", name)
            self.scanned = True
            for changed in self.after_sync:
                changed()
            if self.observer is not None:
                for entry in self._models.values():
                    self.observer.versions_serving(
                        entry.name,
                        sum(s.state is VersionState.AVAILABLE for s in entry.versions.values()),
                    )
                for name in removed:
                    self.observer.versions_serving(name, 0)
        return report

    def _new_entry(
        self, name: str, config: ModelConfig | None, fingerprint: Fingerprint
    ) -> ModelEntry:
        """A model seen for the first time, however it was first seen (readable or not): its
        rollout states are tracked, so every later change of state is logged and counted."""
        entry = self._models[name] = ModelEntry(name, config, fingerprint)
        entry.states = RolloutStates(name, self.observer)
        return entry

    def _sync_failed(self, name: str, exc: Exception, report: ReloadReport) -> None:
        error = without_store_path(f"unexpected error: {exc!r}"[:500], self.scanner.root)
        report.failed.append({"model": name, "version": None, "error": error})
        if self._sync_failures.get(name) != error:
            self._sync_failures[name] = error
            log.error("model %s: %s", name, error)

    async def _sync_model(
        self,
        model_dir: ModelDir,
        unsettled: Collection[tuple[str, int | None]],
        report: ReloadReport,
    ) -> None:
        entry = self._models.get(model_dir.name)
        if entry is not None:
            entry.settling = True
        try:
            await self._apply_model(model_dir, unsettled, report)
        finally:
            entry = self._models.get(model_dir.name)
            if entry is not None:
                entry.settling = False
                entry.refresh_default()
                _note_rollout_state(entry)

    async def _apply_model(
        self,
        model_dir: ModelDir,
        unsettled: Collection[tuple[str, int | None]],
        report: ReloadReport,
    ) -> None:
        name = model_dir.name
        entry = self._models.get(name)
        config_changed = False
        if model_dir.error is not None:
            if (name, None) not in unsettled:  # a link just replaced gets a second look first
                await self._folder_failed(model_dir, report)
            return
        if entry is None or (
            entry.config_fingerprint != model_dir.config_fingerprint
            and (name, None) not in unsettled
        ):
            config, error = await asyncio.to_thread(_read_config, model_dir, self.scanner.root)
            if error is not None:
                error = without_store_path(error, self.scanner.root)
            if entry is None:
                entry = self._new_entry(name, config, model_dir.config_fingerprint)
            elif config is not None:
                config_changed = entry.config is not None and _serving_settings(
                    config
                ) != _serving_settings(entry.config)
                entry.config = config
            entry.config_fingerprint = model_dir.config_fingerprint
            entry.config_error = error
            if error:
                log.error("model %s: %s", name, error)
                report.failed.append({"model": name, "version": None, "error": error})
            else:
                await self._restart_rollout(entry)
        if entry.config is None:
            return  # no valid model.toml ever read: nothing to serve until it is fixed
        # A version new to the registry also waits while model.toml is being changed: the
        # settings written with it (a [rollout] naming it, say) apply before it may serve.
        settings_unsettled = (name, None) in unsettled
        on_disk = {
            v: d
            for v, d in model_dir.versions.items()
            if (name, v) not in unsettled and not (settings_unsettled and v not in entry.versions)
        }
        for version, version_dir in model_dir.versions.items():
            status = entry.versions.get(version)
            if version not in on_disk and status is not None and status.model is not None:
                # Files still changing under a serving version: it keeps its place (and its
                # load) until they settle, so no older version is loaded in its stead.
                on_disk[version] = replace(version_dir, fingerprint=status.fingerprint)
        # Load first, unload after: a removed version serves until its successor does.
        keep = await self._load_wanted(entry, on_disk, config_changed, report)
        for version in [v for v in entry.versions if v not in model_dir.versions]:
            await self._unload(entry, version, report)
        for version, status in list(entry.versions.items()):
            if (
                version not in keep
                and version in on_disk
                and status.state is VersionState.AVAILABLE
            ):
                await self._unload(entry, version, report)
        entry.refresh_default()

    async def _load_wanted(
        self,
        entry: ModelEntry,
        on_disk: dict[int, VersionDir],
        reload_all: bool,
        report: ReloadReport,
    ) -> set[int]:
        """Load what the policy selects, newest first; the versions that serve afterwards."""
        assert entry.config is not None
        policy = entry.config.version_policy
        trial = entry.config.rollout.candidate if entry.config.rollout else None
        promotion = entry.config.promotion
        # A rollout's candidate is loaded whatever the policy, and not counted by it.
        candidates = sorted((v for v in on_disk if v != trial), reverse=True)
        if policy.kind == "specific":
            candidates = [v for v in candidates if v in policy.versions]
        keep: set[int] = set()
        for version in candidates:
            if policy.kind == "latest" and len(keep) >= policy.count:
                break
            if await self._ensure_loaded(entry, on_disk[version], reload_all, report):
                keep.add(version)
        # Loaded whatever the policy: the pinned default, the candidate, and the default before
        # the last promotion (a rollback then switches to it with nothing to load).
        for extra in (entry.config.default_version, trial, promotion and promotion.previous):
            if (
                extra is not None
                and extra in on_disk
                and extra not in keep
                and await self._ensure_loaded(entry, on_disk[extra], reload_all, report)
            ):
                keep.add(extra)
        return keep

    async def _ensure_loaded(
        self, entry: ModelEntry, version_dir: VersionDir, reload: bool, report: ReloadReport
    ) -> bool:
        status = entry.versions.get(version_dir.version)
        unchanged = status is not None and status.fingerprint == version_dir.fingerprint
        if not unchanged or reload:
            await self._load(entry, version_dir, report)
            status = entry.versions[version_dir.version]
        return status is not None and status.state is VersionState.AVAILABLE

    async def _load(self, entry: ModelEntry, version_dir: VersionDir, report: ReloadReport) -> None:
        assert entry.config is not None
        version = version_dir.version
        previous = entry.versions.get(version)
        serving = previous is not None and previous.model is not None
        if not serving:
            entry.versions[version] = VersionStatus(
                version, VersionState.LOADING, version_dir.fingerprint
            )
        try:
            if version_dir.error is not None:
                raise ModelLoadError(version_dir.error)
            model = await asyncio.to_thread(
                load_model,
                entry.name,
                version,
                version_dir.path,
                entry.config,
                self.observer,
                self.scanner.root,
            )
        except Exception as exc:  # any failure of one version must leave the others serving
            error = str(exc) if isinstance(exc, ModelLoadError) else f"unexpected error: {exc!r}"
            error = without_store_path(error, self.scanner.root)
            log.error("model %s version %s failed to load: %s", entry.name, version, error)
            report.failed.append({"model": entry.name, "version": version, "error": error})
            if self.observer is not None:
                self.observer.load_failed(entry.name)
            if serving and previous is not None:
                # The files changed under a serving version: keep serving what was loaded.
                previous.fingerprint = version_dir.fingerprint
                previous.error = f"reload failed, still serving the earlier load: {error}"
            else:
                entry.versions[version] = VersionStatus(
                    version, VersionState.FAILED, version_dir.fingerprint, error=error
                )
            return
        entry.versions[version] = VersionStatus(
            version, VersionState.AVAILABLE, version_dir.fingerprint, model=model
        )
        entry.refresh_default()
        log.info("model %s version %s loaded", entry.name, version)
        report.loaded.append({"model": entry.name, "version": version})
        if serving and previous is not None and previous.model is not None:
            await previous.model.close()

    async def _unload(self, entry: ModelEntry, version: int, report: ReloadReport) -> None:
        status = entry.versions.get(version)
        if status is None:
            return
        if status.model is None:
            del entry.versions[version]  # a failed or never-loaded version: nothing to release
            return
        status.state = VersionState.UNLOADING
        entry.refresh_default()
        await status.model.close()
        entry.versions.pop(version, None)
        log.info("model %s version %s unloaded", entry.name, version)
        report.unloaded.append({"model": entry.name, "version": version})

    async def _folder_failed(self, model_dir: ModelDir, report: ReloadReport) -> None:
        """A model folder that cannot be looked into: its error shown, its versions unloaded
        (as for a folder removed), its settings read afresh once it can be read again."""
        error = without_store_path(model_dir.error or "", self.scanner.root)
        entry = self._models.get(model_dir.name)
        if entry is None:
            entry = self._new_entry(model_dir.name, None, ())
        if entry.config_error != error:
            log.error("model %s: %s", model_dir.name, error)
            report.failed.append({"model": model_dir.name, "version": None, "error": error})
        entry.config_error = error
        entry.config_fingerprint = _UNREAD
        for version in list(entry.versions):
            await self._unload(entry, version, report)

    async def _restart_rollout(self, entry: ModelEntry) -> None:
        """A (re)read model.toml starts its rollout afresh: counts reset and a halt lifted."""
        if entry.rollout is not None:
            await entry.rollout.close()
            entry.rollout = None
        if entry.config is not None and entry.config.rollout is not None:
            entry.rollout = Rollout(entry.name, entry.config.rollout, self.observer, entry.states)
            log.info(
                "model %s: rollout of version %s configured", entry.name, entry.rollout.candidate
            )
        entry.refresh_default()

    async def close(self) -> None:
        """Release every session, after in-flight requests end."""
        async with self._lock:
            for entry in self._models.values():
                if entry.rollout is not None:
                    await entry.rollout.close()
                for status in entry.versions.values():
                    if status.model is not None:
                        await status.model.close()
            self._models.clear()


async def _answered(
    rollout: Rollout, model: LoadedModel, candidate: LoadedModel | None, work: Awaitable[T]
) -> T:
    """Await a rollout's answer, noting which version gave it, how fast, and the candidate's
    failures."""
    started = time.perf_counter()
    try:
        result = await work
    except InferenceFailed:
        if model is candidate:
            rollout.candidate_failed()
        raise
    rollout.answered_by(model, time.perf_counter() - started)
    return result


def _serving_settings(config: ModelConfig) -> tuple[object, ...]:
    """The settings a loaded session depends on: editing the default, the policy, `[rollout]`
    or `[promotion]` reloads nothing."""
    return (config.batching, config.onnxruntime)


def _note_rollout_state(entry: ModelEntry) -> None:
    if entry.states is None:
        return
    rollout = entry.rollout
    if rollout is None:
        why = f"no [rollout] in model.toml; default version {entry.default_version}"
        entry.states.moved(RolloutState.NONE, why)
        return
    state = rollout.state(entry.available(rollout.candidate))
    if state is RolloutState.PENDING:
        why = f"version {rollout.candidate} is not available yet; the default answers everything"
    elif state is RolloutState.ACTIVE:
        why = (
            f"version {rollout.candidate} serves beside default {entry.default_version} "
            f"(traffic {rollout.config.traffic_percent}%, shadow {rollout.config.shadow_percent}%)"
        )
    else:
        why = rollout.halt_reason or "halted"
    entry.states.moved(state, why)


def _serving(entry: ModelEntry) -> bool:
    return any(s.state is VersionState.AVAILABLE for s in entry.versions.values())


def _read_config(model_dir: ModelDir, store: Path) -> tuple[ModelConfig | None, str | None]:
    try:
        return read_model_config(model_dir.path, store), None
    except ConfigError as exc:
        return None, str(exc)
    except Exception as exc:  # every file of the store is untrusted: no failure may escape
        return None, f"{CONFIG_FILE}: cannot read: {exc!r}"[:500]
