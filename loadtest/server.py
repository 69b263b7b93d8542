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
from dataclasses import dataclass
from pathlib import Path

import httpx

STOP_TIMEOUT_S = 40.0
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    (port,) = free_ports(1)
    return port


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports: each stays bound until all are picked, since the
    system may hand a port it just freed out again (a server once got the same port for HTTP
    and gRPC, and failed to start)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def wait_until(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s} s")


@dataclass(frozen=True)
class Served:
    """A running server: where it answers, and its process (for its memory, say)."""

    url: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kib(self) -> int:
        """The server's resident set size, from /proc/<pid>/status."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for process {self.pid}")

    def cpu_seconds(self) -> float:
        """User and system time the server's process has used (every thread), from
        /proc/<pid>/stat."""
        # The name in field 2 may hold spaces and parentheses: split after its closing one.
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


@contextlib.contextmanager
def serve(
    command: list[str],
    env: Mapping[str, str | None] | None = None,
    ready_path: str = "/health/ready",
    cpu: str | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
) -> Iterator[Served]:
    """Run `command` with PORT set; yields the server once `ready_path` answers 200.

    `{port}` in the command is replaced by the port. `cpu` pins the server with taskset
    (e.g. "0"), so that a load generator can have the other core. Its output goes to `log`,
    or nowhere. A variable set to None in `env` is removed from the inherited environment.
    """
    port = free_port()
    argv = [part.replace("{port}", str(port)) for part in command]
    if cpu is not None:
        argv = ["taskset", "-c", cpu, *argv]  # taskset execs the server: the pid is the server's
    merged = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", **(env or {})}
    full_env = {key: value for key, value in merged.items() if value is not None}
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(log.open("wb")) if log is not None else subprocess.DEVNULL
        process = subprocess.Popen(  # noqa: S603 (the caller's own command)
            argv, cwd=cwd, env=full_env, stdout=sink, stderr=subprocess.STDOUT
        )
    served = Served(f"http://127.0.0.1:{port}", process)
    try:
        wait_until(served.url + ready_path)
        yield served
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def model_server(
    store: Path,
    workers: int = 1,
    extra_env: Mapping[str, str | None] | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
    cpu: str | None = None,
) -> contextlib.AbstractContextManager[Served]:
    """This package's server (`python -m app`) on `store`, watching off and no access log;
    `extra_env` overrides those defaults; `cpu` pins it (a taskset list)."""
    env: dict[str, str | None] = {
        "MODEL_STORE": str(store.resolve()),
        "WORKERS": str(workers),
        "POLL_INTERVAL_S": "0",
        "LOG_LEVEL": "warning",
        "ACCESS_LOG": "false",
        "ADMIN_TOKEN": None,
        "DEFAULT_MODEL": None,
        "GRPC_PORT": "0",  # no gRPC: two servers would share its default port
        **(extra_env or {}),
    }
    return serve([sys.executable, "-m", "app"], env, log=log, cwd=cwd, cpu=cpu)
