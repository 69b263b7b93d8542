"""Figures one worker leaves for the others in the multiprocess folder (the status page's
traffic, feedback, drift counts): JSON files replaced whole, and read back forgivingly."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON; readers never see half a file (blocking)."""
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(data))
    os.replace(staging, path)


def read_json(path: Path) -> Any:
    """The JSON in `path`; None when it is gone or half-written elsewhere (blocking)."""
    with contextlib.suppress(OSError, ValueError):
        return json.loads(path.read_text())
    return None


def others(folder: Path, prefix: str, pid: int, fresh_after: float | None = None) -> Iterator[Any]:
    """What every other worker wrote as `{prefix}{its pid}.json`, skipping files older than
    `fresh_after` (a worker gone or idle) and files that cannot be read (blocking)."""
    own = f"{prefix}{pid}.json"
    for path in folder.glob(f"{prefix}*.json"):
        if path.name == own:
            continue
        with contextlib.suppress(OSError):
            if fresh_after is not None and path.stat().st_mtime < fresh_after:
                continue
        data = read_json(path)
        if data is not None:
            yield data
