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


@dataclass(frozen=True, slots=True)
class ModelDir:
    """One model folder: its `model.toml` fingerprint and its version folders."""

    name: str
    path: Path
    config_fingerprint: Fingerprint
    versions: dict[int, VersionDir] = field(default_factory=dict)


def _fingerprint_files(folder: Path, names: list[str]) -> Fingerprint:
    prints = []
    for name in sorted(names):
        try:
            stat = (folder / name).stat()
        except OSError:
            continue
        prints.append((name, stat.st_size, stat.st_mtime_ns))
    return tuple(prints)


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
            if not entry.is_dir(follow_symlinks=True):
                if entry.name != "README.md":
                    self._skip(path, "not a model folder")
                continue
            if not is_valid_model_name(entry.name):
                self._skip(path, f"model names must match {MODEL_NAME.pattern}")
                continue
            models[entry.name] = self._scan_model(entry.name, path)
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
            if not (entry.is_dir(follow_symlinks=True) and VERSION_NAME.fullmatch(entry.name)):
                self._skip(Path(entry.path), "versions are folders named by a positive integer")
                continue
            version_path = Path(entry.path)
            try:
                names = [
                    e.name
                    for e in os.scandir(version_path)
                    if not e.name.startswith((".", "_")) and e.is_file(follow_symlinks=True)
                ]
            except OSError:
                names = []  # unreadable: loading it will say why
            version = int(entry.name)
            versions[version] = VersionDir(
                version, version_path, _fingerprint_files(version_path, names)
            )
        # model.toml is looked at after the version folders: a tool that writes model.toml
        # before renaming a new version into place (model-export --rollout) is then always
        # seen with the settings it wrote, in the same look as the version or an earlier one.
        return ModelDir(name, path, _fingerprint_files(path, [CONFIG_FILE]), versions)
