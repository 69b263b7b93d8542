"""app.logs: text lines that a request cannot forge, JSON lines that keep every record."""

from __future__ import annotations

import logging
import sys

import orjson

from app.logs import JsonFormatter, TextFormatter


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
