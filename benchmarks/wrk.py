"""Drives a server with wrk (throughput: Locust tops out well below these rates on 2 cores)."""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.failures import BenchmarkFailed, Check, check_answer
from loadtest.server import Served

SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]
"""
HEADER_LINE = 'wrk.headers["{name}"] = "{value}"\n'


def lua_bytes(data: bytes) -> str:
    """`data` as a Lua string literal, every byte but plain printable ones as a decimal escape
    (a long bracket string would turn CR LF into LF)."""
    plain = frozenset(range(0x20, 0x7F)) - {ord('"'), ord("\\")}
    return '"' + "".join(chr(b) if b in plain else f"\\{b:03d}" for b in data) + '"'


def binary_script(body: bytes, headers: Mapping[str, str]) -> str:
    """A wrk script that POSTs `body` (any bytes) with `headers`."""
    lines = ['wrk.method = "POST"\n']
    lines += [HEADER_LINE.format(name=name, value=value) for name, value in headers.items()]
    lines.append(f"wrk.body = {lua_bytes(body)}\n")
    return "".join(lines)


def ensure_wrk() -> str:
    """Path to wrk, installing Debian's package if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError("wrk is not installed and there is no apt-get to install it")
    subprocess.run([apt, "update", "-qq"], check=True)
    subprocess.run([apt, "install", "-y", "-qq", "wrk"], check=True)
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("installing wrk failed")
    return found


@dataclass(frozen=True)
class WrkResult:
    requests: int  # completed over the run, as wrk counted them
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int

    def summary(self) -> str:
        """One line of the figures, for progress output."""
        return (
            f"{self.requests_per_s:8.0f} req/s p50 {self.p50_ms:5.2f} ms "
            f"p99 {self.p99_ms:6.2f} ms errors {self.errors}"
        )


def median(results: Sequence[WrkResult], field: str) -> float:
    """The median of one figure (a WrkResult field name) over runs."""
    return statistics.median(getattr(r, field) for r in results)


def round_ratios(
    top: Sequence[WrkResult], bottom: Sequence[WrkResult], field: str = "requests_per_s"
) -> tuple[float, str]:
    """The median of each round's ratio of one figure, top / bottom (runs paired by round, so
    a busy minute on a shared machine slows both sides of a ratio), and the ratios, sorted, as
    text."""
    ratios = sorted(getattr(a, field) / getattr(b, field) for a, b in zip(top, bottom, strict=True))
    return statistics.median(ratios), ", ".join(f"{r:.2f}" for r in ratios)


def median_table(results: Mapping[str, Sequence[WrkResult]], heading: str) -> str:
    """A Markdown table of each name's medians: req/s, p50 and p99, the names under `heading`."""
    lines = [f"| {heading} | req/s | p50 ms | p99 ms |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {name} | {median(runs, 'requests_per_s'):,.0f} | {median(runs, 'p50_ms'):.2f} "
        f"| {median(runs, 'p99_ms'):.2f} |"
        for name, runs in results.items()
    ]
    return "\n".join(lines)


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def run_wrk(
    url: str,
    body: str | bytes | None,
    connections: int,
    seconds: float,
    cpu: str | None = None,
    threads: int = 1,
    check: Check | None = None,
    headers: Mapping[str, str] | None = None,
) -> WrkResult:
    """POST `body` (or GET when None) to `url` for `seconds` over `connections` connections,
    from `threads` wrk threads (pinned to `cpu`, a taskset list, if given). A text body is sent
    as JSON; a bytes body as it is, with `headers`. The request is sent once first and its
    answer must be a 200 that `check` accepts; any request wrk saw fail (non-2xx, socket errors,
    timeouts) raises BenchmarkFailed."""
    check_answer(url, body, check, headers)
    argv = [ensure_wrk(), f"-t{threads}", f"-c{connections}", f"-d{round(seconds)}s", "--latency"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        if isinstance(body, bytes):
            script.write(binary_script(body, headers or {}))
        elif body is not None:
            script.write(SCRIPT.format(body=body))
    try:
        if body is not None:
            argv += ["-s", script.name]
        if cpu is not None:
            argv = ["taskset", "-c", cpu, *argv]
        out = subprocess.run([*argv, url], check=True, capture_output=True, text=True).stdout
    finally:
        Path(script.name).unlink()
    return parse_wrk_output(url, out)


def run_wrk_with_cpu(
    server: Served,
    path: str,
    body: str | bytes | None,
    connections: int,
    seconds: float,
    check: Check | None = None,
) -> tuple[WrkResult, float]:
    """run_wrk on `server`'s `path`, and the CPU time in µs its process used a request: its user
    and system time over the run (every thread) over the requests wrk counted, not over rate
    times `seconds`, since wrk runs whole seconds."""
    before = server.cpu_seconds()
    result = run_wrk(server.url + path, body, connections, seconds, check=check)
    used = server.cpu_seconds() - before
    return result, used / result.requests * 1e6


def parse_wrk_output(url: str, out: str) -> WrkResult:
    """The figures of wrk's `--latency` report; BenchmarkFailed when any request failed."""
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    socket_errors = re.search(r"Socket errors:(.*)", out)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    if errors:
        raise BenchmarkFailed(f"{url}: {errors} of {requests} requests failed under wrk")
    return WrkResult(requests=requests, requests_per_s=rate, p50_ms=p50, p99_ms=p99, errors=errors)
