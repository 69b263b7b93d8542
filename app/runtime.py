"""What the app owns while it runs: its settings, metrics, registry and watcher, typed, in one
object that the edge and the routes share (the routes through app.deps)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

from app.config import Settings
from app.deadlines import Deadlines
from app.drift import DriftMonitor
from app.feedback import FeedbackBook
from app.logs import configure_logging, lines_gathered
from app.metrics import Metrics, multiprocess_dir
from app.predlog.log import PredictionLog
from app.recent import RecentTraffic
from app.shutdown import not_ready_on_sigterm
from ml.config import PredictionLogConfig
from ml.registry import ModelRegistry
from ml.store import StoreScanner
from ml.watch import StoreWatcher


class NotStarted(RuntimeError):
    """The registry is asked for before the app's lifespan built it."""


class Runtime:
    """Long-lived state of one app: built by `create_app`, filled by the lifespan (`running`)."""

    def __init__(self, settings: Settings, *, owns_process: bool = False) -> None:
        self.settings = settings
        self.owns_process = owns_process
        """Whether the lifespan may change what the whole process shares: the root log handlers,
        the collector (gc.freeze) and the SIGTERM handler. Only for the app the process serves
        (`python -m app`, `app.main:app`); an app embedded in a test or another app leaves them
        as they are."""
        self.metrics = Metrics()
        self.drift = DriftMonitor(settings, self.metrics.registry, multiprocess_dir())
        """Drift windows of the versions with a profile.json (app.drift)."""
        self.deadlines = Deadlines(settings.request_timeout_s)
        """The edge's request deadlines; their sweeping task ends with the lifespan."""
        self.draining = False
        """Set on SIGTERM (and by tests): readiness turns 503 while in-flight requests end."""
        self.recent_traffic: RecentTraffic | None = None
        """The status page's last minute of traffic, when UI_ENABLED (app.routes.ui)."""
        self._registry: ModelRegistry | None = None
        self._watcher: StoreWatcher | None = None
        self.prediction_log = PredictionLog.configured(
            settings, self.metrics, self._prediction_log_configs
        )
        """The prediction log, when PREDICTION_LOG_DIR or PREDICTION_LOG_URL is set."""
        self.feedback = FeedbackBook(self.metrics, settings.feedback_window_s, multiprocess_dir())

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            raise NotStarted("the app's lifespan has not started: no registry yet")
        return self._registry

    @property
    def watcher(self) -> StoreWatcher:
        if self._watcher is None:
            raise NotStarted("the app's lifespan has not started: no watcher yet")
        return self._watcher

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The registry and the watcher, for the lifespan: models load in the background while
        the process already answers liveness, and readiness turns 200 once they are in."""
        settings = self.settings
        if self.owns_process:
            configure_logging(settings.log_level, settings.log_format)
            # Everything imported so far lives as long as the process: moved out of the
            # collector's reach, a full collection no longer walks it in the middle of requests.
            gc.collect()
            gc.freeze()
        # Made here, in the running loop: the registry holds asyncio objects.
        registry = ModelRegistry(
            StoreScanner(settings.model_store), settings.default_model, self.metrics
        )
        self._registry = registry
        if self.prediction_log is not None:
            registry.after_sync.append(self.prediction_log.read_shares)
        self._watcher = StoreWatcher(registry, settings.poll_interval_s)
        self.draining = False
        logging_predictions = (
            self.prediction_log.running()
            if self.prediction_log is not None
            else contextlib.nullcontext()
        )
        gathering = (
            lines_gathered(asyncio.get_running_loop())
            if self.owns_process
            else contextlib.nullcontext()
        )
        on_sigterm = not_ready_on_sigterm(self) if self.owns_process else contextlib.nullcontext()
        with gathering:
            async with logging_predictions:
                try:
                    with on_sigterm:
                        async with (
                            self.metrics.flushing(),
                            self._watcher.running(),
                            self.drift.running(registry),
                        ):
                            yield
                            self.draining = True
                    await registry.close()
                finally:
                    await self.deadlines.close()
        self.metrics.flush()  # runs that ended while the versions closed

    def _prediction_log_configs(self) -> dict[str, PredictionLogConfig]:
        """Each model's `[prediction_log]` in its model.toml as the store reads now."""
        return {
            entry.name: entry.config.prediction_log
            for entry in self.registry
            if entry.config is not None and entry.config.prediction_log is not None
        }

    def not_ready_reason(self) -> str | None:
        """Why the server is not ready, or None when it is (/health/ready, /v2/health/ready)."""
        if self.draining:
            return "the server is shutting down"
        registry = self.registry
        if not registry.ready:
            if registry.scanned:
                return "no model version is available"
            return "the model store is still being loaded"
        return None
