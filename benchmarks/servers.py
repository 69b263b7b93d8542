"""The servers benchmarks compare: ours on a store, and the baselines of benchmarks/baselines.

The launcher itself lives in the installed load-test package (loadtest.server), which starts
our server the same way for `model-loadtest --store`.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from loadtest.server import Served, model_server, serve

REPO = Path(__file__).resolve().parent.parent

__all__ = ["REPO", "Served", "baseline_server", "demo_store", "demo_stores", "our_server"]


def our_server(
    store: Path,
    workers: int = 1,
    extra_env: Mapping[str, str | None] | None = None,
    log: Path | None = None,
    cpu: str | None = None,
) -> contextlib.AbstractContextManager[Served]:
    """Our service (`python -m app`) on `store`, run from the checkout; `cpu` pins it."""
    return model_server(store, workers, extra_env, log, REPO, cpu)


def baseline_server(
    module: str, model_path: Path, attribute: str = "app"
) -> contextlib.AbstractContextManager[Served]:
    """A baseline ASGI app from benchmarks/baselines, under uvicorn with one worker."""
    command = [
        sys.executable, "-m", "uvicorn", f"benchmarks.baselines.{module}:{attribute}",
        "--host", "127.0.0.1", "--port", "{port}", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    return serve(command, {"MODEL_PATH": str(model_path)}, ready_path="/health/live", cwd=REPO)


def demo_store(dest: Path) -> Path:
    """A copy of the demo store (models_store) at `dest`, for a benchmark to change."""
    return Path(shutil.copytree(REPO / "models_store", dest))


def demo_stores(root: Path, *names: str) -> dict[str, Path]:
    """A copy of the demo store under `root` for each name, to change apart."""
    return {name: demo_store(root / name) for name in names}
