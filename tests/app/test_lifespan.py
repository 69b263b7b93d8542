"""What the lifespan of an embedded app (`create_app(settings)` in a test or another app) starts
and stops: its own tasks end with it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

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
