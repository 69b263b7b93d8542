"""Driving a registry as the server does: a full rescan is what /admin/reload runs."""

from __future__ import annotations

from ml.registry import ModelRegistry, ReloadReport
from ml.watch import StoreWatcher


async def rescan(registry: ModelRegistry) -> ReloadReport:
    """Scan the store now and apply every change (StoreWatcher.reload_now, as /admin/reload)."""
    return await StoreWatcher(registry, 0).reload_now()
