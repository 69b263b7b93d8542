"""Runs Locust headless for one step of load and reads back every request it made."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.payloads import Stream, write_streams

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
# Requests that start this soon after the first one are left out: they pay for new connections
# and a cold generator.
WARMUP_S = 0.5
# Locust's run time counts from before its users are spawned: this much more lets a step
# measure its full length after the warm-up.
SPAWN_SLACK_S = 1.0


class GeneratorFailed(RuntimeError):
    """Locust did not run, or recorded nothing; the message carries its output."""


@dataclass(frozen=True)
class Requests:
    """Every request of one stream in one step that started and ended within its measured
    window (`window_s` long), in start order: when it started (wall clock, seconds), how long its
    answer took (ms), and its HTTP status (0: no answer)."""

    name: str
    window_s: float
    start: np.ndarray
    latency_ms: np.ndarray
    status: np.ndarray
    errors: dict[int, str]  # the first answer of each failing status
    processes: int  # Locust processes that sent them


@dataclass(frozen=True)
class StepLoad:
    """How hard one step pushes: `users` concurrent users, each at `user_rate` req/s (None:
    closed loop), measured for `seconds` after a warm-up, from `processes` Locust processes.
    `pacing` "schedule" is open loop; "throughput" is Locust's constant_throughput (see the
    locustfile)."""

    users: int
    seconds: int
    user_rate: float | None = None
    processes: int = 1
    pacing: str = "schedule"


def run_step(url: str, streams: Sequence[Stream], load: StepLoad) -> dict[str, Requests]:
    """Drive `url` with `streams` under `load`; every stream's requests after the warm-up."""
    with tempfile.TemporaryDirectory(prefix="loadtest-") as tmp:
        folder = Path(tmp)
        streams_file = folder / "streams.json"
        write_streams(streams_file, streams)
        record_dir = folder / "record"
        record_dir.mkdir()
        env = {
            **os.environ,
            "LOADTEST_STREAMS": str(streams_file),
            "LOADTEST_RECORD_DIR": str(record_dir),
            "LOADTEST_USER_RATE": str(load.user_rate or ""),
            "LOADTEST_PACING": load.pacing,
        }
        run_time = math.ceil(load.seconds + WARMUP_S + SPAWN_SLACK_S)
        command = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url,
            "-u", str(load.users), "-r", str(max(load.users * 20, 1)), "-t", f"{run_time}s",
            "--stop-timeout", "5", "--only-summary", "--loglevel", "WARNING",
            "--exit-code-on-error", "0",  # failed requests are read from the record instead
        ]  # fmt: skip
        if load.processes > 1:
            command += ["--processes", str(load.processes)]
        done = subprocess.run(  # noqa: S603 (this interpreter, our locustfile)
            command, env=env, capture_output=True, text=True, check=False
        )
        files = sorted(record_dir.glob("*.json"))
        if done.returncode != 0 or not files:
            raise GeneratorFailed(
                f"Locust exited with {done.returncode} and recorded {len(files)} process(es):\n"
                f"{done.stderr[-3000:]}"
            )
        return _merge([json.loads(f.read_text()) for f in files], load.seconds)


def _merge(records: list[dict[str, Any]], seconds: int) -> dict[str, Requests]:
    names = records[0]["streams"]
    start = np.concatenate([np.asarray(r["start"], dtype=float) for r in records])
    latency = np.concatenate([np.asarray(r["latency_ms"], dtype=float) for r in records])
    status = np.concatenate([np.asarray(r["status"], dtype=int) for r in records])
    stream = np.concatenate([np.asarray(r["stream"], dtype=int) for r in records])
    errors: dict[tuple[int, int], str] = {}
    for record in records:
        for key, text in record["errors"].items():
            index, code = key.split(":")
            errors.setdefault((int(index), int(code)), text)
    ends = start + latency / 1000.0
    begin = start.min() + WARMUP_S
    end = min(begin + seconds, float(ends.max()))
    kept = (start >= begin) & (ends <= end)
    result = {}
    for index, name in enumerate(names):
        mine = kept & (stream == index)
        order = np.argsort(start[mine], kind="stable")
        result[name] = Requests(
            name,
            end - begin,
            start[mine][order],
            latency[mine][order],
            status[mine][order],
            {code: text for (i, code), text in errors.items() if i == index},
            len(records),
        )
    return result
