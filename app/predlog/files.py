"""The file sink: JSON lines in a folder, one file per worker at a time, rotated by size and
age, for a log shipper (Fluent Bit, Vector, a sidecar) to pick up.

Files are named `predictions-<UTC start time>-<pid>-<n>.jsonl`, so names sort by time and
workers never share a file. A worker deletes its own oldest closed files past `max_files`.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Sequence
from io import BufferedWriter
from pathlib import Path

import orjson

from app.predlog.events import Event, Redactor, record
from app.predlog.sink import Sink

PREFIX = "predictions-"
SUFFIX = ".jsonl"
JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


class FileSink(Sink):
    """Appends one JSON line per event to the current file of this worker."""

    name = "file"

    def __init__(
        self,
        folder: Path,
        redact: Redactor,
        *,
        queue_rows: int,
        max_bytes: int,
        max_age_s: float,
        max_files: int,
    ) -> None:
        super().__init__(queue_rows)
        self.folder = folder
        self.redact = redact
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.max_files = max_files
        self._file: BufferedWriter | None = None
        self._path: Path | None = None
        self._size = 0
        self._opened_at = 0.0
        self._count = 0
        self._closed: deque[Path] = deque()

    def write(self, batch: Sequence[Event]) -> None:
        lines = []
        for event in batch:
            try:
                lines.append(orjson.dumps(record(event, self.redact), option=JSON_OPTIONS))
            except (TypeError, orjson.JSONEncodeError) as exc:
                self.failed += 1
                self.warn("an event could not be written as JSON: %s", exc)
        if not lines:
            return
        started = time.perf_counter()
        try:
            for line in lines:  # rotation is checked line by line: no file passes max_bytes
                self._current(len(line)).write(line)
                self._size += len(line)
            if self._file is not None:
                self._file.flush()  # lines reach the file as soon as they are written
        except OSError as exc:
            # Which lines of the batch reached the file before the error is unknown: all of
            # them count as failed, so that written + dropped + failed is every event.
            self.failed += len(lines)
            self.warn("cannot write to %s: %s", self.folder, exc)
            self._drop_file()  # opened afresh on the next write: the folder may come back
            return
        self.written += len(lines)
        self.observe(time.perf_counter() - started)

    def _current(self, adding: int) -> BufferedWriter:
        now = time.time()
        if self._file is not None and (
            (self._size and self._size + adding > self.max_bytes)
            or now - self._opened_at >= self.max_age_s
        ):
            self._rotate()
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._count += 1
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
            path = self.folder / f"{PREFIX}{stamp}-{os.getpid()}-{self._count}{SUFFIX}"
            self._file = path.open("ab")
            self._path, self._size, self._opened_at = path, 0, now
        return self._file

    def _rotate(self) -> None:
        path = self._path
        self._drop_file()
        if path is None:
            return
        self._closed.append(path)
        while len(self._closed) > self.max_files:
            oldest = self._closed.popleft()
            try:
                oldest.unlink(missing_ok=True)
            except OSError as exc:
                self.warn("cannot delete %s: %s", oldest, exc)

    def _drop_file(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                self.warn("cannot close %s: %s", self._path, exc)
        self._file, self._path = None, None

    def close(self) -> None:
        self._drop_file()
