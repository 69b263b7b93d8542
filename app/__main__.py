"""`python -m app`: serve the app with uvicorn (factory mode: `app.main:serve_from_environment`
in every worker), configured from the settings."""

from __future__ import annotations

import logging
import os
import resource
import signal
import sys
import tempfile
from types import FrameType

import uvicorn

from app.config import settings_from_environment
from app.connections import GuardedHttp
from app.logs import configure_logging


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    # uvicorn re-raises the signal it drained on; ending here makes a drained stop exit 0.
    sys.exit(0)


# Files a worker keeps open besides its HTTP connections: gRPC, models, the store's scan, logs.
SPARE_FILES = 256


def _allow_open_files(max_connections: int) -> None:
    """Raise the soft limit on open files, up to the hard one, so that MAX_CONNECTIONS can be
    reached before the process runs out of file descriptors; say so when it cannot."""
    wanted = max_connections + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        if raised < wanted:
            logging.getLogger(__name__).warning(
                "open files are limited to %d: lower MAX_CONNECTIONS (%d) below %d",
                raised,
                max_connections,
                raised - SPARE_FILES,
            )


def main() -> None:
    settings = settings_from_environment()
    configure_logging(settings.log_level, settings.log_format)
    if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Every worker writes its metrics here and /metrics adds them up (app.metrics).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="model-server-metrics-")
    signal.signal(signal.SIGTERM, _exit_cleanly)
    _allow_open_files(settings.max_connections)
    uvicorn.run(
        "app.main:serve_from_environment",
        factory=True,  # each worker builds its own app from the settings, and owns its process
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=None,  # app.logs configures every logger, in each worker too
        access_log=False,  # our own access log (app.edge) carries request ids and models
        proxy_headers=False,
        server_header=False,  # names the software to whoever asks, on every answer
        timeout_graceful_shutdown=settings.drain_timeout_s,
        http=GuardedHttp,  # header, time and connection limits (app.connections)
        timeout_keep_alive=settings.keep_alive_timeout_s,
    )


if __name__ == "__main__":
    main()
