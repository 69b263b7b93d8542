"""`export_model(..., rollout=...)` and `model-export --rollout`: a new version shipped
straight into a rollout, answering no more than its share of traffic at any moment.

The order does it, whatever the server's watcher sees when: once the version's files are staged,
`model.toml` is rewritten (the version serving by default pinned, a `[rollout]` naming the version
to come), and only then is the staged folder renamed into place. The server looks at a model's
`model.toml` after its version folders and loads a new version only once the `model.toml` it sees
has settled, so the version is never served without the settings that name it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml.cli.rollout import OPTIONS, RolloutCommandError, apply, replace_text
from ml.config import CONFIG_FILE
from ml.export.errors import ExportError
from ml.export.writer import write_version


@dataclass(frozen=True, slots=True)
class RolloutSettings:
    """The `[rollout]` a new version starts with; the keys and limits of `model.toml`."""

    traffic_percent: float = 0.0
    shadow_percent: float | None = None
    sticky_header: str | None = None
    min_agreement: float | None = None
    max_error_rate: float | None = None
    window: int | None = None

    def options(self, candidate: int) -> dict[str, Any]:
        """As `model-rollout start` takes them."""
        return {"candidate": candidate, **{opt: getattr(self, key) for opt, key in OPTIONS.items()}}


def check_rollout(store: Path, name: str, version: int, settings: RolloutSettings) -> None:
    """Refuse, before any conversion, a rollout the server would refuse or that has no default
    to serve beside the new version."""
    if not (store / name).is_dir():
        raise ExportError(
            f"model {name} is not in the store yet: a rollout tries a new version beside one "
            "that serves by default, so export the first version without a rollout"
        )
    _start(store, name, version, settings, write=False)


def ship(
    store: Path, name: str, version: int, files: dict[str, bytes], settings: RolloutSettings
) -> Path:
    """Write `files` as `version` of `name` with its rollout, in the safe order; on failure,
    `model.toml` is put back as it was."""
    path = store / name / CONFIG_FILE
    try:
        before: str | None = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        before = None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from exc
    announced = False

    def announce() -> None:
        nonlocal announced
        _start(store, name, version, settings, write=True)
        announced = True

    try:
        return write_version(store / name, version, files, before_rename=announce)
    except BaseException:
        if announced:  # the version never appeared: its rollout goes too
            if before is None:
                path.unlink(missing_ok=True)
            else:
                replace_text(path, before)
        raise


def _start(store: Path, name: str, version: int, settings: RolloutSettings, *, write: bool) -> None:
    try:
        apply(store, name, "start", settings.options(version), write=write)
    except RolloutCommandError as exc:
        raise ExportError(f"rollout: {exc}") from exc
