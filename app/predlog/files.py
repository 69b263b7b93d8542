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
from pathlib import Path

from app.predlog.sink import Sink

PREFIX = "predictions-"
SUFFIX = ".jsonl"


class FileSink(Sink):
    """Appends lines (bytes ending in a newline: one event's, or several) to this worker's
    current file."""

    name = "file"

    def __init__(
        self, folder: Path, *, queue_rows: int, max_bytes: int, max_age_s: float, max_files: int
    ) -> None:
        super().__init__(queue_rows)
        self.folder = folder
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.max_files = max_files
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._opened_at = 0.0
        self._count = 0
        self._closed: deque[Path] = deque()

    def write(self, batch: Sequence[bytes], events: int) -> None:
        started = time.perf_counter()
        try:
            if self._fd is None:
                self._open()
            size = sum(map(len, batch))
            if self._size + size <= self.max_bytes and not self._aged():
                self._flush(batch)  # the usual case: one call for the batch, no Python per line
                self._size += size
            else:
                self._write_rotating(batch)
        except OSError as exc:
            # Which lines of the batch reached the file before the error is unknown: all of
            # them count as failed, so that written + dropped + failed is every event.
            self.failed += events
            self.warn("cannot write to %s: %s", self.folder, exc)
            self._drop_file()  # opened afresh on the next write: the folder may come back
            return
        self.written += events
        self.observe(time.perf_counter() - started)

    def _write_rotating(self, batch: Sequence[bytes]) -> None:
        """`batch`, rotating wherever the next line would pass max_bytes (or the file aged):
        no file passes max_bytes."""
        pending: list[bytes] = []
        for payload in batch:
            if self._size + len(payload) <= self.max_bytes and not (self._size and self._aged()):
                pending.append(payload)  # the usual payload: whole, into the open file
                self._size += len(payload)
                continue
            # A payload may hold many lines; bytes split at "\n" and "\r" only, which orjson
            # always escapes inside a line.
            for line in payload.splitlines(keepends=True):
                if self._size and (self._size + len(line) > self.max_bytes or self._aged()):
                    self._flush(pending)
                    pending = []
                    self._rotate()
                pending.append(line)
                self._size += len(line)
        self._flush(pending)

    def _aged(self) -> bool:
        return time.time() - self._opened_at >= self.max_age_s

    def _flush(self, lines: Sequence[bytes]) -> None:
        if lines:
            assert self._fd is not None
            data = memoryview(b"".join(lines))
            while data:  # one system call, in all but rare cases
                data = data[os.write(self._fd, data) :]

    def _open(self) -> None:
        now = time.time()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._count += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        path = self.folder / f"{PREFIX}{stamp}-{os.getpid()}-{self._count}{SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._path, self._size, self._opened_at = path, 0, now

    def _rotate(self) -> None:
        path = self._path
        self._drop_file()
        self._open()
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
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError as exc:
                self.warn("cannot close %s: %s", self._path, exc)
        self._fd, self._path = None, None

    def close(self) -> None:
        self._drop_file()
