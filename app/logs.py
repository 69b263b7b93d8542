"""Logging set-up: plain text for people, JSON lines (LOG_FORMAT=json) for log pipelines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import orjson

ACCESS_LOGGER = "model_server.access"
# Control characters (C0, DEL, C1) and the Unicode line breaks, written as escapes in text
# lines: a request path with a CR or LF in it must not start a line of its own, nor a terminal
# escape reach whoever reads the log.
_ESCAPES = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
}
_ESCAPES |= {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}


def escape_controls(text: str) -> str:
    """`text` with every control character written as an escape (`\\n`, `\\x1b`)."""
    # Almost every line is printable: checked in C, it skips translate's lookup of each character.
    return text if text.isprintable() else text.translate(_ESCAPES)


def _printable(value: Any) -> Any:
    """`value` with lone surrogates (from file names that are not UTF-8) written as escapes,
    which JSON cannot carry as they are."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


class _SecondText:
    """A time's text to the second, formatted once a second (strftime costs more than a line).
    The second and its text are kept as one tuple: a formatter in another thread never reads
    one without the other."""

    def __init__(self, pattern: str, convert: Any) -> None:
        self.pattern, self.convert = pattern, convert
        self.cached = (-1, "")

    def __call__(self, whole: int) -> str:
        second, text = self.cached
        if whole != second:
            text = time.strftime(self.pattern, self.convert(whole))
            self.cached = (whole, text)
        return text


_text_seconds = _SecondText("%Y-%m-%d %H:%M:%S", time.localtime)
_json_seconds = _SecondText("%Y-%m-%dT%H:%M:%S", time.gmtime)
_MILLIS = [b".%03dZ" % milli for milli in range(1000)]


def text_time(created: float) -> str:
    """A time as text lines write it: local time, milliseconds after a comma (logging's own)."""
    whole = int(created)
    return f"{_text_seconds(whole)},{int((created - whole) * 1000):03d}"


def json_time(created: float) -> str:
    """A time as JSON lines write it: RFC 3339 UTC, with milliseconds."""
    whole = int(created)
    return f"{_json_seconds(whole)}.{int((created - whole) * 1000):03d}Z"


def json_time_parts(created: Sequence[float]) -> tuple[list[bytes], list[bytes]]:
    """json_time of many times at once, as bytes in two parts each (the second's text, then
    the milliseconds and "Z"): the seconds' text made once per second, the rest by numpy and
    table lookups, no Python per time."""
    times = np.asarray(created, dtype=np.float64)
    wholes = times.astype(np.int64)
    millis = ((times - wholes) * 1000).astype(np.int64).tolist()
    wholes_list = wholes.tolist()
    seconds = {whole: _json_seconds(whole).encode() for whole in set(wholes_list)}
    return list(map(seconds.__getitem__, wholes_list)), list(map(_MILLIS.__getitem__, millis))


def text_line(created: float, level: str, logger: str, message: str) -> str:
    """One text log line, `time level logger: message`, with control characters escaped."""
    return escape_controls(f"{text_time(created)} {level:<7} {logger}: {message}")


def json_record(
    created: float, level: str, logger: str, message: str, fields: dict[str, Any]
) -> str:
    """One JSON log line: time, level, logger, message, then the record's own fields."""
    line = {"ts": json_time(created), "level": level, "logger": logger, "message": message}
    line.update(fields)
    try:
        return orjson.dumps(line, default=str).decode()
    except orjson.JSONEncodeError:  # a lone surrogate: the line is kept, escaped
        return orjson.dumps(_printable(line), default=str).decode()


# Lines a turn of the loop may gather before they are written without waiting for its end.
MAX_GATHERED_LINES = 256


class LineWriter:
    """Writes finished lines to the log handler's stream, under its lock. Lines written on the
    event loop's thread gather until the end of the loop's turn and go out in one write: the
    access log costs one system call per turn, not one per request. Anywhere else (another
    thread, no loop bound), a line is written at once."""

    def __init__(self, handler: logging.StreamHandler[Any], json: bool) -> None:
        self.handler = handler
        self.json = json
        self._gathered: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0

    def bind(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Gather on `loop` (the running one, on its thread), or stop gathering (None)."""
        self.flush()
        self._loop, self._thread = loop, threading.get_ident() if loop is not None else 0

    def write(self, line: str) -> None:
        if self._loop is None or threading.get_ident() != self._thread:
            self._write(line + "\n")
            return
        gathered = self._gathered
        gathered.append(line)
        if len(gathered) == 1:
            self._loop.call_soon(self.flush)
        elif len(gathered) >= MAX_GATHERED_LINES:
            self.flush()

    def flush(self) -> None:
        if self._gathered:
            lines, self._gathered = self._gathered, []
            lines.append("")
            self._write("\n".join(lines))

    def _write(self, text: str) -> None:
        handler = self.handler
        with handler.lock or contextlib.nullcontext():
            try:
                handler.stream.write(text)
                handler.stream.flush()
            except (OSError, ValueError):  # a closed or broken stderr: as logging, go on
                pass


line_writer: LineWriter | None = None
"""Set by `configure_logging`: the access log writes through it rather than through logging."""


@contextlib.contextmanager
def lines_gathered(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """While the block runs, access lines written on `loop` gather for one write per turn."""
    writer = line_writer
    if writer is None:
        yield
        return
    writer.bind(loop)
    try:
        yield
    finally:
        writer.bind(None)  # written out: nothing is left for a loop that stops turning


# Attributes every LogRecord has; anything else was passed in `extra` and belongs in the line.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        level, message = record.levelname.lower(), record.getMessage()
        return json_record(record.created, level, record.name, message, fields)


class TextFormatter(logging.Formatter):
    """`time level logger: message` (`text_line`): one record, one line (a traceback follows
    on lines of its own)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # logging's name
        return text_line(record.created, record.levelname, record.name, record.message)


def configure_logging(level: str, log_format: str) -> None:
    """Send every logger (uvicorn's included) to stderr in the chosen format; idempotent."""
    global line_writer
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    line_writer = LineWriter(handler, json=log_format == "json")
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # app.edge writes the access log, with request ids and models; uvicorn's would repeat it.
    logging.getLogger("uvicorn.access").disabled = True
