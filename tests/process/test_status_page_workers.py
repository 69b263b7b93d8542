"""With WORKERS=2, /ui/status adds up the last minute of both workers, whichever answers."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from live_server import copy_demo_store, start_server

from app.metrics import FLUSH_INTERVAL_S

START_TIMEOUT_S = 15.0
IRIS_ROW = [6.7, 3.0, 5.2, 2.3]
BATCHES = 10
PER_BATCH = 12


def default_traffic(status: dict) -> dict | None:
    iris = next(m for m in status["models"] if m["name"] == "iris")
    return next(v for v in iris["versions"] if v["default"])["traffic"]


def test_two_workers_traffic_is_summed_on_the_status_page(tmp_path: Path) -> None:
    store = copy_demo_store(tmp_path / "store")
    env = {"WORKERS": "2", "TMPDIR": str(tmp_path)}  # TMPDIR: where the shared metrics folder goes
    with start_server(store, tmp_path, env=env, start_timeout_s=START_TIMEOUT_S) as server:
        deadline = time.monotonic() + START_TIMEOUT_S
        while server.output().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, "two workers did not start"
            time.sleep(0.05)

        def predict(_: int) -> str:
            # A new connection each time: either worker may answer.
            body = {"model": "iris", "features": IRIS_ROW}
            answer = httpx.post(server.url + "/predict", json=body)
            assert answer.status_code == 200, answer.text
            return answer.headers["x-request-id"].rsplit("-", 1)[0]  # the worker's prefix

        workers: set[str] = set()
        sent = 0
        with ThreadPoolExecutor(4) as pool:
            while len(workers) < 2 and sent < BATCHES * PER_BATCH:
                workers |= set(pool.map(predict, range(PER_BATCH)))
                sent += PER_BATCH
        assert len(workers) == 2, "one worker answered every request"

        # Each worker writes its slots after its next flush; every answer then counts once.
        deadline = time.monotonic() + 10 * FLUSH_INTERVAL_S
        seen: list[tuple[int, int]] = []
        while True:
            status = httpx.get(server.url + "/ui/status", timeout=5.0).json()
            traffic = default_traffic(status)
            seen.append((status["workers"]["answered_by"], traffic and traffic["requests"]))
            if traffic and traffic["requests"] == sent and status["workers"]["traffic_from"] == 2:
                break
            assert time.monotonic() < deadline, f"never summed to {sent}: {seen[-5:]}"
            time.sleep(0.1)
        assert status["workers"]["configured"] == 2
        # Whichever worker answers, the sum is the same.
        for _ in range(6):
            again = httpx.get(server.url + "/ui/status", timeout=5.0).json()
            assert default_traffic(again)["requests"] == sent
