"""The Locust users of the load test: every request valid for the model, from ready-made bodies.

Driven by `model-loadtest` (headless, one run per step), or interactively in Locust's web UI:

    LOADTEST_MODEL=iris locust -f loadtest/locustfile.py --host http://127.0.0.1:8000

Environment:
- LOADTEST_STREAMS: a file of streams written by `model-loadtest` (what each user sends; users
  take the streams in turn). Without it, one stream is built here from the server's description
  of LOADTEST_MODEL, with LOADTEST_VERSION, LOADTEST_ROUTE (predict, batch, v2, v2-binary),
  LOADTEST_BATCH_ROWS and LOADTEST_SAMPLES (a samples.json) where set.
- LOADTEST_USER_RATE: each user sends this many requests a second. By default open loop: on a
  fixed schedule, whatever the answers' pace, a request's latency counting from its scheduled
  time, so that a server that falls behind shows its queue (no coordinated omission). With
  LOADTEST_PACING=throughput, Locust's `constant_throughput` instead: a user waits for each
  answer and never sends more than the rate, and latency is the answer's alone (the latency
  guard's measure, which its budgets were set with). Unset: closed loop, each user sends its
  next request when the last one is answered.
- LOADTEST_RECORD_DIR: each Locust process writes every request's start, latency and status
  there when the test stops (Locust's own percentiles are rounded to whole milliseconds).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from array import array
from pathlib import Path
from typing import Any

import gevent
import httpx
from locust import FastHttpUser, constant, constant_throughput, events, task

from loadtest.payloads import Route, Stream, model_stream, read_streams
from loadtest.rows import describe, generate_rows, read_samples

ERROR_TEXT_CHARS = 500


class Recorder:
    """Every request this process sent: which stream, when, how long, and its status."""

    def __init__(self) -> None:
        self.stream = array("H")
        self.start = array("d")
        self.latency_ms = array("d")
        self.status = array("H")
        self.errors: dict[str, str] = {}  # "stream:status": the first answer of each failure

    def add(self, stream: int, start: float, latency_ms: float, status: int, text: str) -> None:
        self.stream.append(stream)
        self.start.append(start)
        self.latency_ms.append(latency_ms)
        self.status.append(status)
        if status >= 400 or status == 0:
            self.errors.setdefault(f"{stream}:{status}", text[:ERROR_TEXT_CHARS])

    def write(self, folder: Path, names: list[str]) -> None:
        data = {
            "streams": names,
            "stream": self.stream.tolist(),
            "start": self.start.tolist(),
            "latency_ms": self.latency_ms.tolist(),
            "status": self.status.tolist(),
            "errors": self.errors,
        }
        (folder / f"{os.getpid()}.json").write_text(json.dumps(data))


recorder = Recorder()
_streams: list[Stream] = []
_user_numbers = itertools.count()


def streams_for(host: str) -> list[Stream]:
    """This process's streams, read or built on first use."""
    if not _streams:
        path = os.environ.get("LOADTEST_STREAMS")
        _streams.extend(read_streams(Path(path)) if path else [_stream_from_environment(host)])
    return _streams


def _stream_from_environment(host: str) -> Stream:
    model = os.environ["LOADTEST_MODEL"]
    version = os.environ.get("LOADTEST_VERSION")
    with httpx.Client(base_url=host, timeout=10.0) as client:
        inputs = describe(client, model, int(version) if version else None)
    samples = os.environ.get("LOADTEST_SAMPLES")
    rows = read_samples(Path(samples)) if samples else generate_rows(inputs, 256)
    route = Route(os.environ.get("LOADTEST_ROUTE", Route.PREDICT.value))
    batch_rows = int(os.environ.get("LOADTEST_BATCH_ROWS", "64"))
    return model_stream(inputs, rows, route, batch_rows, pin_version=version is not None)


@events.test_stop.add_listener
def _write_record(**_: Any) -> None:
    folder = os.environ.get("LOADTEST_RECORD_DIR")
    if folder and len(recorder.start):
        recorder.write(Path(folder), [s.name for s in _streams])


class ModelUser(FastHttpUser):
    """Sends its stream's requests one after another (closed loop) or on a schedule (open loop)."""

    user_rate = float(os.environ.get("LOADTEST_USER_RATE") or 0)
    scheduled = user_rate > 0 and os.environ.get("LOADTEST_PACING", "schedule") == "schedule"
    wait_time = constant_throughput(user_rate) if user_rate and not scheduled else constant(0)

    def on_start(self) -> None:
        streams = streams_for(self.host or "")
        self.stream_index = next(_user_numbers) % len(streams)
        self.stream = streams[self.stream_index]
        self.sent = random.randrange(len(self.stream.bodies))  # noqa: S311 (not security)
        self.interval = 1.0 / self.user_rate if self.scheduled else 0.0
        # Users start at random points of their interval, so that they do not send in bursts.
        self.next_at = time.time() + random.random() * self.interval  # noqa: S311

    @task
    def send(self) -> None:
        if self.interval:
            gevent.sleep(max(0.0, self.next_at - time.time()))
            due = self.next_at
            self.next_at += self.interval
        body, headers = self.stream.request(self.sent)
        self.sent += 1
        started = time.time()
        response = self.client.request(
            self.stream.method, self.stream.path, data=body, headers=headers, name=self.stream.name
        )
        ended = time.time()
        start = due if self.interval else started
        status = response.status_code or 0
        text = (response.text or "") if status >= 400 else str(getattr(response, "error", ""))
        recorder.add(self.stream_index, start, (ended - start) * 1000.0, status, text)
