"""Finds `<store>/<model>/<version>/model.onnx` on disk and fingerprints what it finds.

A fingerprint is the (name, size, mtime) of every file that makes up a version or a model's
`model.toml`: the watcher compares two looks to tell a finished file from one still being
written, and the registry compares it with what it loaded to tell a changed file.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ml.config import CONFIG_FILE
from ml.errors import StoreUnavailable
from ml.files import confined

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
SAMPLES_FILE = "samples.json"
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
VERSION_NAME = re.compile(r"^[1-9][0-9]{0,17}$")

_ABSOLUTE_PATH = re.compile(r"(?<![\w.<>])/[^\s'\",;:]+")

Fingerprint = tuple[tuple[str, int, int], ...]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VersionDir:
    """One version folder as found on disk."""

    version: int
    path: Path
    fingerprint: Fingerprint
    # Why the folder cannot be looked into (a link loop, a link out of the store), if it cannot.
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ModelDir:
    """One model folder: its `model.toml` fingerprint and its version folders."""

    name: str
    path: Path
    config_fingerprint: Fingerprint
    versions: dict[int, VersionDir] = field(default_factory=dict)
    # Why the folder cannot be looked into, if it cannot: the model then has no versions.
    error: str | None = None


def _fingerprint_files(folder: Path, names: list[str]) -> Fingerprint:
    prints = []
    for name in sorted(names):
        try:
            stat = (folder / name).stat()
        except OSError:
            continue
        prints.append((name, stat.st_size, stat.st_mtime_ns))
    return tuple(prints)


def _link_fingerprint(entry: os.DirEntry[str]) -> Fingerprint:
    """The entry itself, not what it points at: a folder that cannot be entered changes only
    when its link is replaced."""
    try:
        stat = entry.stat(follow_symlinks=False)
    except OSError:
        return ()
    return ((entry.name, stat.st_size, stat.st_mtime_ns),)


def _is_folder(entry: os.DirEntry[str], root: Path) -> bool:
    """Whether `entry` is a folder; OSError when it is a link out of the store or a loop."""
    if entry.is_symlink():
        confined(Path(entry.path), root)
    return entry.is_dir(follow_symlinks=True)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def without_store_path(text: str, root: Path) -> str:
    """`text` with the store's location cut out of every path in it: errors reach clients, and
    where the store lives on the server is none of their business."""
    for prefix in sorted({str(root.resolve()), str(root.absolute()), str(root)}, key=len)[::-1]:
        if prefix not in (".", ".."):  # Path(".") / "iris" prints as "iris": nothing to cut
            text = text.replace(prefix + os.sep, "").replace(prefix, "<store>")
    # Any absolute path left points outside the store (a refused external-data file, say).
    return _ABSOLUTE_PATH.sub("<path outside the store>", text)


def is_valid_model_name(name: str) -> bool:
    """True for names the store may hold; anything else never reaches the file system."""
    return MODEL_NAME.fullmatch(name) is not None


class StoreScanner:
    """Reads the store's layout; warns once about each entry it skips."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._warned: set[str] = set()

    def _skip(self, path: Path, why: str) -> None:
        key = f"{path}:{why}"
        if key not in self._warned:
            self._warned.add(key)
            log.warning("skipping %s: %s", path, why)

    def scan(self) -> dict[str, ModelDir]:
        """Every model folder with its version folders; staged and unknown entries are skipped.

        Raises StoreUnavailable when the store folder itself is missing or unreadable: that says
        nothing about the models in it (an unmounted volume), so callers keep what they serve.
        """
        try:
            entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        except FileNotFoundError:
            raise StoreUnavailable("the model store folder does not exist") from None
        except OSError as exc:
            raise StoreUnavailable(f"the model store cannot be read: {exc.strerror}") from None
        models: dict[str, ModelDir] = {}
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith((".", "_")):
                self._skip(path, "hidden or staged (names starting with '.' or '_')")
                continue
            try:
                is_folder = _is_folder(entry, self.root)
            except OSError as exc:
                if is_valid_model_name(entry.name):
                    error = f"the model folder cannot be read: {_reason(exc)}"
                    models[entry.name] = ModelDir(
                        entry.name, path, _link_fingerprint(entry), error=error
                    )
                else:
                    self._skip(path, _reason(exc))
                continue
            if not is_folder:
                if entry.name != "README.md":
                    self._skip(path, "not a model folder")
                continue
            if not is_valid_model_name(entry.name):
                self._skip(path, f"model names must match {MODEL_NAME.pattern}")
                continue
            try:
                models[entry.name] = self._scan_model(entry.name, path)
            except Exception as exc:  # every entry is untrusted: none may end the scan
                error = f"the model folder cannot be read: {_reason(exc)}"
                models[entry.name] = ModelDir(entry.name, path, (), error=error)
        return models

    def _scan_model(self, name: str, path: Path) -> ModelDir:
        versions: dict[int, VersionDir] = {}
        try:
            entries = list(os.scandir(path))
        except OSError as exc:
            self._skip(path, f"cannot read the model folder: {exc.strerror}")
            entries = []
        for entry in entries:
            if entry.name == CONFIG_FILE:
                continue
            if entry.name.startswith((".", "_")):
                self._skip(Path(entry.path), "hidden or staged (names starting with '.' or '_')")
                continue
            version_path = Path(entry.path)
            if not VERSION_NAME.fullmatch(entry.name):
                self._skip(version_path, "versions are folders named by a positive integer")
                continue
            version = int(entry.name)
            try:
                if not _is_folder(entry, self.root):
                    self._skip(version_path, "versions are folders named by a positive integer")
                    continue
            except OSError as exc:
                error = f"the version folder cannot be read: {_reason(exc)}"
                versions[version] = VersionDir(
                    version, version_path, _link_fingerprint(entry), error=error
                )
                continue
            versions[version] = VersionDir(
                version, version_path, _fingerprint_files(version_path, _file_names(version_path))
            )
        # model.toml is looked at after the version folders: a tool that writes model.toml
        # before renaming a new version into place (model-export --rollout) is then always
        # seen with the settings it wrote, in the same look as the version or an earlier one.
        return ModelDir(name, path, _fingerprint_files(path, [CONFIG_FILE]), versions)


def _file_names(folder: Path) -> list[str]:
    """The names of the files in a version folder that make up its fingerprint."""
    names = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith((".", "_")):
                    continue
                try:
                    if entry.is_file(follow_symlinks=True):
                        names.append(entry.name)
                except OSError:  # a link loop: loading the version will say why
                    continue
    except OSError:
        pass  # unreadable: loading it will say why
    return names
