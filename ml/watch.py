"""Polls the store and asks the registry to follow it.

A file is loaded only once two looks, one poll interval apart, agree on its size and mtime, so
a copy still in progress is never loaded half-written; a staged `.tmp-*` or `_*` folder is not
even looked at until it is renamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from ml.errors import StoreUnavailable
from ml.registry import ModelRegistry, ReloadReport
from ml.store import Fingerprint, ModelDir

log = logging.getLogger(__name__)

LookKey = tuple[str, int | None]  # (model, version), or (model, None) for its model.toml


def _fingerprints(found: dict[str, ModelDir]) -> dict[LookKey, Fingerprint]:
    prints: dict[LookKey, Fingerprint] = {}
    for name, model_dir in found.items():
        prints[(name, None)] = model_dir.config_fingerprint
        for version, version_dir in model_dir.versions.items():
            prints[(name, version)] = version_dir.fingerprint
    return prints


def _failure(exc: Exception) -> str:
    """One short line for an unexpected failure (a RecursionError's traceback runs to a
    thousand frames)."""
    return f"{exc!r}"[:500]


class StoreWatcher:
    """Loads the store once, then follows it every `interval_s` seconds (0: never)."""

    def __init__(self, registry: ModelRegistry, interval_s: float) -> None:
        self.registry = registry
        self.interval_s = interval_s
        self._previous: dict[LookKey, Fingerprint] = {}

    async def _look(self) -> dict[str, ModelDir]:
        return await asyncio.to_thread(self.registry.scanner.scan)

    async def reload_now(self) -> ReloadReport:
        """Scan and apply everything found, settled or not: start-up and /admin/reload."""
        found = await self._look()
        self._previous = _fingerprints(found)
        return await self.registry.sync(found)

    async def poll_once(self) -> ReloadReport:
        """Scan and apply what has not changed since the previous look."""
        found = await self._look()
        current = _fingerprints(found)
        unsettled = {key for key, prints in current.items() if self._previous.get(key) != prints}
        self._previous = current
        return await self.registry.sync(found, unsettled)

    async def _follow(self) -> None:
        root = self.registry.scanner.root
        outage: str | None = None
        try:
            await self.reload_now()
        except StoreUnavailable as exc:  # live but not ready until the store appears
            outage = exc.detail
            log.error(
                "%s: %s; serving nothing until it appears", self.registry.scanner.root, outage
            )
        except Exception as exc:  # the server must come up even if the first scan fails
            outage = _failure(exc)
            log.error("the first scan of the model store failed: %s", outage)
        self.registry.scanned = True
        while self.interval_s > 0:
            await asyncio.sleep(self.interval_s)
            try:
                await self.poll_once()
            except StoreUnavailable as exc:
                if outage != exc.detail:  # once per outage, not every poll
                    log.error(
                        "%s: %s; still serving what is loaded",
                        self.registry.scanner.root,
                        exc.detail,
                    )
                outage = exc.detail
                continue
            except Exception as exc:  # one bad look must not stop the watching
                failure = _failure(exc)
                if outage != failure:  # once per change: a traceback each poll floods
                    log.error("scanning the model store failed: %s", failure)
                outage = failure
                continue
            if outage is not None:
                log.info("the model store is back: %s", root)
                outage = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[asyncio.Task[None]]:
        """Load and follow the store in the background while the block runs."""
        task = asyncio.create_task(self._follow(), name="store-watcher")
        try:
            yield task
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
