"""`python -m app`: serve the app with uvicorn (factory mode: `app.main:create_app` in every
worker), configured from the settings."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from types import FrameType

import uvicorn

from app.config import get_settings
from app.logs import configure_logging


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    # uvicorn re-raises the signal it drained on; ending here makes a drained stop exit 0.
    sys.exit(0)


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Every worker writes its metrics here and /metrics adds them up (app.metrics).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="model-server-metrics-")
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        "app.main:create_app",
        factory=True,  # each worker builds its own app from the settings
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=None,  # app.logs configures every logger, in each worker too
        access_log=False,  # our own access log (app.edge) carries request ids and models
        proxy_headers=False,
        server_header=False,  # names the software to whoever asks, on every answer
        timeout_graceful_shutdown=settings.drain_timeout_s,
    )


if __name__ == "__main__":
    main()
