"""What the lifespan of an embedded app (`create_app(settings)` in a test or another app) starts
and stops: its own tasks end with it, and it changes nothing the whole process shares."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from live_server import REPO, server_environ
from prometheus_client import metrics as prometheus_metrics

from app.config import Settings
from app.main import create_app


def _settings(store: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None, model_store=store, poll_interval_s=0, default_model=None, grpc_port=0
    )


def test_the_deadline_sweeper_ends_with_the_lifespan(tmp_path: Path):
    served = create_app(_settings(tmp_path))

    async def scenario() -> tuple[bool, bool]:
        async with served.runtime.running():
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=served), base_url="http://test"
            ) as client:
                answer = await client.get("/health/live")
            assert answer.status_code == 200
            sweeper = served.deadlines._sweeper
            running = sweeper is not None and not sweeper.done()
        # Asked in the loop still running: asyncio.run cancels whatever is left when it ends.
        return running, sweeper is not None and sweeper.cancelled()

    running, stopped = asyncio.run(asyncio.wait_for(scenario(), 30))

    assert running, "a request did not start the deadline sweeper"
    assert stopped, "the deadline sweeper outlived the lifespan"


def _process_state() -> tuple[list[logging.Handler], int, object, bool]:
    return (
        list(logging.getLogger().handlers),
        gc.get_freeze_count(),
        signal.getsignal(signal.SIGTERM),
        prometheus_metrics._use_created,
    )


def test_an_embedded_app_leaves_the_process_as_it_was(tmp_path: Path):
    before = _process_state()
    served = create_app(_settings(tmp_path))

    async def scenario() -> tuple[tuple[list[logging.Handler], int, object, bool], bytes]:
        async with served.runtime.running():
            during = _process_state()
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=served), base_url="http://test"
            ) as client:
                answer = await client.get("/metrics")
            assert answer.status_code == 200
        return during, answer.content

    # In the main thread, where a signal handler could be installed.
    during, metrics = asyncio.run(asyncio.wait_for(scenario(), 30))

    assert during == before
    assert _process_state() == before
    assert b"model_server_requests_total" in metrics
    assert b"_created" not in metrics


OWNED = """
import asyncio, gc, logging, signal, sys
from pathlib import Path
from app.config import Settings
from app.main import create_app

settings = Settings(_env_file=None, model_store=Path(sys.argv[1]), grpc_port=0, poll_interval_s=0)
served = create_app(settings, owns_process=True)
handlers, sigterm = list(logging.getLogger().handlers), signal.getsignal(signal.SIGTERM)

async def scenario() -> list[bool]:
    async with served.runtime.running():
        return [
            logging.getLogger().handlers != handlers,
            gc.get_freeze_count() > 0,
            signal.getsignal(signal.SIGTERM) is not sigterm,
        ]

print(asyncio.run(scenario()))
"""


def test_the_app_that_owns_its_process_sets_it_up(tmp_path: Path):
    """What `python -m app` and `app.main:app` build: logging, gc.freeze and the SIGTERM hook."""
    done = subprocess.run(
        [sys.executable, "-c", OWNED, str(tmp_path)],
        cwd=REPO,
        env=server_environ(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[True, True, True]"
