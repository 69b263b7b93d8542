"""Write a version folder atomically: staged in a dot-folder the server ignores, then renamed."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from ml.export.errors import ExportError


def pick_version(model_dir: Path, version: int | None) -> int:
    """The version to write: the one asked for if free, else one above the highest present."""
    if version is None:
        existing = [int(p.name) for p in _version_dirs(model_dir)]
        return max(existing, default=0) + 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ExportError(f"version must be a positive integer, not {version!r}")
    if (model_dir / str(version)).exists():
        raise ExportError(f"{model_dir / str(version)} already exists; versions are immutable")
    return version


def _version_dirs(model_dir: Path) -> list[Path]:
    """The integer-named version folders of one model (none if the model is new)."""
    if not model_dir.is_dir():
        return []
    return [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0]


def write_version(
    model_dir: Path,
    version: int,
    files: dict[str, bytes],
    before_rename: Callable[[], None] | None = None,
) -> Path:
    """Stage the files in a dot-folder the server ignores, then rename it into place;
    `before_rename` runs once the files are staged, just before the version becomes visible."""
    target = model_dir / str(version)
    created_model_dir = not model_dir.exists()
    staged = model_dir / f".tmp-{version}-{secrets.token_hex(4)}"
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        staged.mkdir()
        for file_name, data in files.items():
            _write_synced(staged / file_name, data)
        _fsync_dir(staged)
        if before_rename is not None:
            before_rename()
        # Checked again: another export may have taken the version since we picked it, and
        # os.rename would silently replace an empty folder.
        if target.exists():
            raise ExportError(f"{target} already exists; versions are immutable")
        os.rename(staged, target)
        _fsync_dir(model_dir)
    except BaseException as exc:
        shutil.rmtree(staged, ignore_errors=True)
        if created_model_dir and model_dir.is_dir() and not any(model_dir.iterdir()):
            model_dir.rmdir()
        if isinstance(exc, OSError):
            raise ExportError(f"could not write {target}: {exc}") from exc
        raise
    return target


def _write_synced(path: Path, data: bytes) -> None:
    """Write and fsync, so the folder never becomes visible with half-written files."""
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make new entries of a folder durable; Windows cannot open folders, so skip it there."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
