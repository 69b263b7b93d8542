"""The real server as a process: `python -m app` (or any command that serves the app) on a free
loopback port, over a store of the test's own, logging to a file, in a process group of its own.

    with start_server(copy_demo_store(tmp_path / "store"), tmp_path) as server:
        httpx.get(server.url + "/models")

Start-up waits, with a bounded deadline, for /health/live (and /health/ready, unless told not
to) and fails with the server's output; leaving the `with` block stops the server and prints its
output (pytest shows it when the test fails). Subclasses add what their tests ask of a server
and start with `Subclass.start(...)`.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import pytest

from app.config import Settings
from loadtest.server import free_ports

REPO = Path(__file__).resolve().parents[1]
DEMO_STORE = REPO / "models_store"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.05
# Every setting the server reads, derived so that a new one can never leak in from the tests'
# environment; and what else the server takes from its environment.
SETTINGS_VARS = frozenset(name.upper() for name in Settings.model_fields)
SERVER_VARS = SETTINGS_VARS | {"PROMETHEUS_MULTIPROC_DIR"}
PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_KEYS = {"type", "title", "status", "detail", "errors", "error_count"}


def server_environ(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (by default this process's environment) without any variable the server reads."""
    source = os.environ if base is None else base
    return {k: v for k, v in source.items() if k.upper() not in SERVER_VARS}


def copy_demo_store(dest: Path) -> Path:
    """A copy of the repo's demo store at `dest`, for a server to own (and a test to change)."""
    return Path(shutil.copytree(DEMO_STORE, dest))


def wait_until(
    check: Callable[[], bool],
    what: str,
    timeout_s: float,
    *,
    server: LiveServer | None = None,
    context: Callable[[], str] | None = None,
) -> float:
    """Call `check` until it is true; the seconds it took. Fails after `timeout_s`, or as soon as
    `server` has exited, saying `what` was not seen, followed by `context()`."""
    started = time.monotonic()
    while not check():
        if server is not None:
            server.alive()
        if time.monotonic() - started > timeout_s:
            detail = f"; {context()}" if context is not None else ""
            pytest.fail(f"{what}: not seen within {timeout_s} s{detail}")
        time.sleep(POLL_S)
    return time.monotonic() - started


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    store: Path
    log: Path  # stdout, and stderr too unless `stderr_log` is set
    stderr_log: Path | None = None
    grpc_port: int = 0  # GRPC_PORT: a free port of its own (0 when `env` turns gRPC off)

    @property
    def grpc_target(self) -> str:
        """`host:port` of its gRPC server, for tritonclient.grpc or a grpc channel."""
        return f"127.0.0.1:{self.grpc_port}"

    @classmethod
    def start(
        cls,
        store: Path,
        log_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        base_env: Mapping[str, str] | None = None,
        command: Sequence[str] | None = None,
        cwd: Path = REPO,
        wait_ready: bool = True,
        ready_path: str = "/health/ready",
        start_timeout_s: float = START_TIMEOUT_S,
        split_stderr: bool = False,
        preexec_fn: Callable[[], object] | None = None,
    ) -> Self:
        """Start `command` (by default `python -m app` with this interpreter) in `cwd` on a free
        port over `store`, logging to `log_dir`; return once /health/live (and `ready_path`, if
        `wait_ready`) answers 200 within `start_timeout_s`, else stop it and fail with its output.

        The environment is `base_env` (by default this process's) without any server variable,
        then MODEL_STORE, HOST, PORT, GRPC_PORT (another free port), POLL_INTERVAL_S=0 and
        PYTHONUNBUFFERED=1, then `env`.
        `split_stderr` logs stderr to a file of its own (`errors()`); `preexec_fn` runs in the
        child before exec.
        """
        port, grpc_port = free_ports(2)
        environment = server_environ(base_env)
        environment.update(
            MODEL_STORE=str(store),
            HOST="127.0.0.1",
            PORT=str(port),
            GRPC_PORT=str(grpc_port),
            POLL_INTERVAL_S="0",
            PYTHONUNBUFFERED="1",
        )
        environment.update(env or {})
        log = log_dir / f"server-{port}.log"
        stderr_log = log_dir / f"server-{port}.stderr.log" if split_stderr else None
        with contextlib.ExitStack() as files:
            out = files.enter_context(log.open("wb"))
            err = files.enter_context(stderr_log.open("wb")) if stderr_log else subprocess.STDOUT
            process = subprocess.Popen(
                list(command) if command is not None else [sys.executable, "-m", "app"],
                cwd=cwd,
                env=environment,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group, so that workers can be killed too
                preexec_fn=preexec_fn,
            )
        grpc_port = int(environment["GRPC_PORT"])
        server = cls(process, f"http://127.0.0.1:{port}", port, store, log, stderr_log, grpc_port)
        try:
            paths = ["/health/live", ready_path] if wait_ready else ["/health/live"]
            server._wait_for(paths, start_timeout_s)
        except BaseException:
            server.stop()
            raise
        return server

    def output(self) -> str:
        """Everything the server wrote."""
        if self.stderr_log is None:
            return self.log.read_text(errors="replace")
        return (
            f"--- stdout ---\n{self.log.read_text(errors='replace')}\n"
            f"--- stderr ---\n{self.errors()}"
        )

    def errors(self) -> str:
        """What the server wrote to stderr (everything, unless started with `split_stderr`)."""
        return (self.stderr_log or self.log).read_text(errors="replace")

    def alive(self) -> None:
        """Fail, with the server's output, if it has exited."""
        if self.process.poll() is not None:
            pytest.fail(f"the server exited with {self.process.returncode}:\n{self.output()}")

    def _wait_for(self, paths: Sequence[str], timeout_s: float) -> None:
        """Poll each of `paths` in turn until it answers 200; fail with the server's output if
        they have not all done so within `timeout_s`, or if the server exits."""
        deadline = time.monotonic() + timeout_s
        for path in paths:
            last = "no answer"
            while True:
                self.alive()
                try:
                    response = httpx.get(self.url + path, timeout=2.0)
                except httpx.HTTPError as exc:
                    last = repr(exc)
                else:
                    if response.status_code == 200:
                        break
                    last = f"{response.status_code} {response.text}"
                if time.monotonic() > deadline:
                    pytest.fail(f"{path} not 200 within {timeout_s} s ({last}):\n{self.output()}")
                time.sleep(POLL_S)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then SIGKILL to the whole process group if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout_s)
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL to the whole process group, at once: nothing of this server outlives a test."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT_S)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        # Shown by pytest only when the test fails.
        print(f"--- output of the server at {self.url} ---\n{self.output()}")


start_server = LiveServer.start


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response from `sock`: status, headers (lower-case names), body."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    body = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def check_problem(
    response: httpx.Response, status: int, *locs: Sequence[str | int]
) -> dict[str, Any]:
    """`response` is an RFC 9457 problem with `status`, no traceback, and an error at each loc."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    body = response.json()
    assert set(body) == PROBLEM_KEYS, body
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["errors"], list)
    assert isinstance(body["error_count"], int) and body["error_count"] >= len(body["errors"])
    for error in body["errors"]:
        assert set(error) == {"loc", "msg"}, error
        assert isinstance(error["loc"], list)
        assert isinstance(error["msg"], str) and error["msg"]
    found = [error["loc"] for error in body["errors"]]
    for loc in locs:
        assert list(loc) in found, f"no error at {list(loc)}; errors at {found}"
    return body
