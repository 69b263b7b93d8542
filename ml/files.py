"""Reading the store's files as untrusted input.

Anyone who can write to the store can put anything there: a FIFO, a link to `/dev/zero` or to
a file outside the store, a link that points at itself, a file of gigabytes. Every file the
server reads from the store goes through here: a link is followed only if it resolves inside
`within` (the store); the file is opened without blocking and must then prove, on the open
descriptor, to be a regular file no larger than its kind's limit. The errors are OSErrors, so
that every reader's existing "cannot read" handling words them.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

# The most the server reads of each kind of file. Far above what the export tool writes; they
# bound the memory a file can take and the time its parsing holds the interpreter.
CONFIG_MAX_BYTES = 64 * 1024
METADATA_MAX_BYTES = 4 * 1024 * 1024
SAMPLES_MAX_BYTES = 1024 * 1024
# A drift profile: about a dozen bins per numeric feature, up to 52 values per string feature.
PROFILE_MAX_BYTES = 16 * 1024 * 1024
# A single ONNX file cannot be larger: protobuf messages end at 2 GiB (bigger models keep their
# weights in external data files).
MODEL_MAX_BYTES = 2 * 1024 * 1024 * 1024

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class RefusedFile(OSError):
    """A store file the server will not read; the message says why."""


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.4g} {unit}"
    return f"{count} bytes"


def kind_of(mode: int) -> str:
    """What a file of `mode` is, in words ("a FIFO", "a socket", ...)."""
    return next((word for test, word in _KINDS if test(mode)), "not a regular file")


def confined(path: Path, within: Path | None) -> str:
    """The real path of `path`, whose links must all resolve inside `within` (None: anywhere).

    A link loop is left for the open to report (ELOOP)."""
    real = os.path.realpath(path)
    if within is not None:
        top = os.path.realpath(within)
        if real != top and not real.startswith(top.rstrip(os.sep) + os.sep):
            raise RefusedFile(f"{path.name} is a link to outside the model store")
    return real


def _open(path: Path, within: Path | None, limit: int) -> int:
    """An open descriptor of the regular file at `path`; never blocks."""
    real = confined(path, within)
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno != errno.ENXIO:
            raise
        # A socket cannot be opened at all: say what it is rather than "no such device".
        kind = kind_of(os.stat(real).st_mode)
        raise RefusedFile(f"{path.name} is {kind}, not a regular file") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RefusedFile(f"{path.name} is {kind_of(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise RefusedFile(
                f"{path.name} is {info.st_size:,} bytes, over the {_size(limit)} limit "
                f"for {path.name}"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_file(path: Path, *, within: Path | None, limit: int) -> None:
    """Raise unless `path` is a regular file inside `within` of at most `limit` bytes, for
    files another library opens (onnxruntime)."""
    os.close(_open(path, within, limit))


def read_bytes(path: Path, *, within: Path | None, limit: int) -> bytes:
    """The content of the regular file at `path`; FileNotFoundError when there is none,
    another OSError (often RefusedFile) when it cannot or may not be read."""
    with os.fdopen(_open(path, within, limit), "rb") as file:
        data = file.read(limit + 1)  # the file may have grown since fstat
    if len(data) > limit:
        raise RefusedFile(f"{path.name} grew past the {_size(limit)} limit for {path.name}")
    return data


def read_text(path: Path, *, within: Path | None, limit: int) -> str:
    """`read_bytes` decoded as UTF-8 (UnicodeDecodeError when it is not)."""
    return read_bytes(path, within=within, limit=limit).decode("utf-8")


def check_folder(folder: Path, *, within: Path | None) -> None:
    """Raise unless every entry of `folder` (but hidden and staged ones) is a regular file or a
    folder inside `within`: onnxruntime opens a model's external data files itself, so a FIFO
    or a device among them must be refused before it does."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith((".", "_")):
                continue
            path = Path(entry.path)
            if entry.is_symlink():
                confined(path, within)
            mode = os.stat(path).st_mode  # ELOOP for a link loop
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise RefusedFile(f"{entry.name} is {kind_of(mode)}, not a regular file")
