"""Starts a server under test as its own process on a free loopback port, and stops it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s} s")


@contextlib.contextmanager
def serve(
    command: list[str],
    env: Mapping[str, str] | None = None,
    ready_path: str = "/health/ready",
    cpu: str | None = None,
) -> Iterator[str]:
    """Run `command` with PORT set; yields the base URL once `ready_path` answers 200.

    `{port}` in the command is replaced by the port. `cpu` pins the server with taskset
    (e.g. "0"), so that a load generator can have the other core.
    """
    port = free_port()
    argv = [part.replace("{port}", str(port)) for part in command]
    if cpu is not None:
        argv = ["taskset", "-c", cpu, *argv]
    full_env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", **(env or {})}
    process = subprocess.Popen(
        argv, cwd=REPO, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(url + ready_path)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def our_server(
    store: Path, workers: int = 1, extra_env: Mapping[str, str] | None = None
) -> contextlib.AbstractContextManager[str]:
    """Our service (`python -m app`) on `store`."""
    env = {
        "MODEL_STORE": str(store),
        "WORKERS": str(workers),
        "POLL_INTERVAL_S": "0",
        "LOG_LEVEL": "warning",
        "ACCESS_LOG": "false",  # the baselines log nothing either
        **(extra_env or {}),
    }
    return serve([sys.executable, "-m", "app"], env)


def baseline_server(module: str, model_path: Path) -> contextlib.AbstractContextManager[str]:
    """A baseline ASGI app from benchmarks/baselines, under uvicorn with one worker."""
    command = [
        sys.executable, "-m", "uvicorn", f"benchmarks.baselines.{module}:app",
        "--host", "127.0.0.1", "--port", "{port}", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    return serve(command, {"MODEL_PATH": str(model_path)}, ready_path="/health/live")
