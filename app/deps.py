"""Typed dependencies of the FastAPI routes: what the app's runtime holds, one alias each."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.runtime import Runtime
from ml.registry import ModelRegistry
from ml.watch import StoreWatcher


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_settings(runtime: RuntimeDep) -> Settings:
    """The app's settings, as `create_app` was given them (not necessarily the environment's)."""
    return runtime.settings


def get_registry(runtime: RuntimeDep) -> ModelRegistry:
    return runtime.registry


def get_watcher(runtime: RuntimeDep) -> StoreWatcher:
    return runtime.watcher


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
WatcherDep = Annotated[StoreWatcher, Depends(get_watcher)]
