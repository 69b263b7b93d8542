"""app.logs: text lines that a request cannot forge, JSON lines that keep every record."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator

import orjson
import pytest

from app import logs
from app.access import log_access
from app.logs import (
    JsonFormatter,
    LineWriter,
    TextFormatter,
    configure_logging,
    json_time,
    json_time_parts,
    lines_gathered,
)


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("model_server.access", logging.INFO, "", 0, message, args, None)
    made.__dict__.update(extra)
    return made


def test_text_lines_escape_control_characters():
    path = "/x\r\n2026-01-01 INFO forged\x1b[2J\u2028\x85\x00"
    line = TextFormatter().format(record('"GET %s" %d', path, 404))

    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "\u2028" not in line and "\x85" not in line and "\x00" not in line
    assert '"GET /x\\r\\n2026-01-01 INFO forged\\x1b[2J\\u2028\\x85\\x00" 404' in line


def test_a_traceback_still_follows_on_lines_of_its_own():
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, "", 0, "failed", None, sys.exc_info())
    lines = TextFormatter().format(failed).splitlines()

    assert lines[0].endswith("x: failed")
    assert lines[-1] == "ValueError: boom"


def test_json_lines_keep_a_name_that_is_not_utf8():
    name = b"/store/bad\xffname".decode("utf-8", "surrogateescape")
    line = JsonFormatter().format(record("skipping %s: %s", name, "not UTF-8", path=name))

    parsed = orjson.loads(line)
    assert parsed["message"] == "skipping /store/bad\\udcffname: not UTF-8"
    assert parsed["path"] == "/store/bad\\udcffname"


# -- the access log's own writer ----------------------------------------------------------------


class Stream:
    """A stream that keeps each write apart."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


# The loggers configure_logging sets up (the root and uvicorn's): the fixture puts them back.
CONFIGURED = (None, "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture
def writer(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LineWriter, Stream]]:
    """`configure_logging`'s writer, over a stream that records its writes; afterwards every
    logger it configured has its handlers, level, propagation and disabled flag back, so that
    uvicorn's loggers are not left cleared or disabled for the tests that follow."""
    stream = Stream()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(logs, "line_writer", logs.line_writer)
    loggers = [logging.getLogger(name) for name in CONFIGURED]
    saved = [(one.handlers[:], one.level, one.propagate, one.disabled) for one in loggers]
    try:
        configure_logging("info", "text")
        assert logs.line_writer is not None
        yield logs.line_writer, stream
    finally:
        for one, (handlers, level, propagate, disabled) in zip(loggers, saved, strict=True):
            one.handlers[:] = handlers
            one.setLevel(level)  # setLevel, not the attribute: it clears the loggers' caches
            one.propagate = propagate
            one.disabled = disabled


def access(path: str = "/predict", status: int = 200) -> None:
    log_access(
        client="127.0.0.1", method="POST", path=path, route="/predict", status=status,
        seconds=0.00125, request_id="r-1", model="iris", version="2",
    )  # fmt: skip


def test_access_lines_of_one_turn_of_the_loop_go_out_in_one_write(writer):
    _, stream = writer

    async def requests() -> None:
        with lines_gathered(asyncio.get_running_loop()):
            for status in (200, 404, 422):
                access(status=status)
            assert stream.writes == []  # nothing yet: the turn is not over
            await asyncio.sleep(0)
            assert len(stream.writes) == 1
            access(status=503)  # the block's end writes what its last turn gathered

    asyncio.run(requests())
    assert len(stream.writes) == 2
    lines = "".join(stream.writes).splitlines()
    assert [line.split('" ')[1].split()[0] for line in lines] == ["200", "404", "422", "503"]


def test_access_lines_from_another_thread_are_written_at_once(writer):
    _, stream = writer

    async def requests() -> None:
        with lines_gathered(asyncio.get_running_loop()):
            await asyncio.to_thread(access)
            assert len(stream.writes) == 1

    asyncio.run(requests())


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_an_access_line_reads_as_logging_would_write_its_record(writer, log_format):
    """The writer's line and the line logging's formatter makes of the same record agree, but
    for the time, with control characters escaped in text."""
    line_writer, stream = writer
    line_writer.json = log_format == "json"
    forged = "/x\r\nforged\x1b[2J"
    access(path=forged)
    written = stream.writes[-1]
    assert written.endswith("\n") and written.count("\n") == 1

    logs.line_writer = None  # through logging's record, formatter and handler
    formatter = JsonFormatter() if log_format == "json" else TextFormatter()
    logging.getLogger().handlers[0].setFormatter(formatter)
    access(path=forged)
    through_logging = stream.writes[-1]
    if log_format == "json":
        mine, theirs = orjson.loads(written), orjson.loads(through_logging)
        assert list(mine) == list(theirs)
        assert {**mine, "ts": None} == {**theirs, "ts": None}
    else:
        stamp = len("2026-01-01 00:00:00,000 ")
        assert written[stamp:] == through_logging[stamp:]
        assert "\\r\\nforged\\x1b[2J" in written


def test_json_time_parts_join_to_json_time():
    # Seconds' ends, the epoch, a second on its own, and times of one second in any order.
    times = [1_790_000_000.9996, 1_790_000_001.0, 0.0, 1.999, 1_790_000_000.5, 1_790_000_000.001]
    seconds, rest = json_time_parts(times)
    assert [a + b for a, b in zip(seconds, rest, strict=True)] == [
        json_time(t).encode() for t in times
    ]
    assert json_time_parts([]) == ([], [])
