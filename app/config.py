"""Settings from the environment (or `.env`), read once per process."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service; the README's settings table mirrors this class."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    model_store: Path = Path("models_store")
    """Folder holding <model>/<version>/model.onnx."""
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=256)
    """uvicorn worker processes; each loads every model and watches the store itself."""
    poll_interval_s: float = Field(2.0, ge=0)
    """How often the store is rescanned; 0 turns watching off."""
    default_model: str | None = None
    """Model for requests that name none (else the store must hold exactly one)."""
    admin_token: SecretStr | None = None
    """Bearer token for /admin/*; unset turns the admin routes off (403)."""
    max_batch_rows: int = Field(10_000, ge=1)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1)
    grpc_port: int = Field(8081, ge=0, le=65535)
    """Port of the Open Inference Protocol over gRPC, on HOST; 0 turns gRPC off."""
    grpc_max_message_bytes: int | None = Field(None, ge=1)
    """Largest gRPC request message; unset means MAX_BODY_BYTES."""
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    log_format: Literal["text", "json"] = "text"
    """`json` writes one JSON object a line (access log included)."""
    access_log: bool = True
    """One line a request, with its request id, status, duration, model and version."""
    request_timeout_s: float = Field(30.0, gt=0)
    """A request still running after this is answered 504."""
    drain_timeout_s: float = Field(30.0, ge=0)
    """On SIGTERM, how long in-flight requests may take to finish before the process exits."""
    max_header_bytes: int = Field(32 * 1024, ge=1024)
    """Largest header section of an HTTP request (request line included); larger is 431."""
    max_header_count: int = Field(100, ge=1)
    """Most header lines in one HTTP request; more is 431."""
    header_timeout_s: float = Field(10.0, gt=0)
    """Time for a request's headers to arrive in full, from the connection's first byte (or the
    request's, on a kept-alive connection); later is 408, and a connection that sent nothing
    is closed."""
    body_timeout_s: float = Field(20.0, gt=0)
    """Time for a request's body to arrive in full once its headers have; later is 408."""
    keep_alive_timeout_s: float = Field(65.0, gt=0)
    """How long an idle HTTP connection is kept open between requests."""
    max_connections: int = Field(1000, ge=1)
    """Open HTTP connections per worker; a request on a connection beyond them is answered 503
    and the connection closed."""
    drain_idle_s: float = Field(2.0, ge=0)
    """On SIGTERM, how long an idle kept-alive connection stays open, so that a request its
    client wrote before it saw the close is still answered (with `Connection: close`)."""
    grpc_max_concurrent_calls: int = Field(512, ge=1)
    """gRPC calls in progress per worker; a call beyond them is RESOURCE_EXHAUSTED."""
    max_errors_listed: int = Field(20, ge=1, le=100)
    """Most field errors one error answer lists (`error_count` gives them all)."""
    docs_enabled: bool = True
    """Serve /docs, /redoc and /openapi.json."""
    ui_enabled: bool = True
    """Serve the status page at /ui and the JSON it polls."""
    drift_window_rows: int = Field(10_000, ge=10)
    """A version's drift window closes once it holds this many rows..."""
    drift_window_s: float = Field(300.0, gt=0)
    """...or after this many seconds, if it holds DRIFT_MIN_ROWS rows by then."""
    drift_min_rows: int = Field(100, ge=1)
    drift_check_s: float = Field(1.0, gt=0, le=60)
    """How often served rows are binned and due windows closed."""

    # -- the prediction log and feedback (app.predlog, app.feedback) ----------------------------
    prediction_log_dir: Path | None = None
    """Folder of the prediction log's JSONL files; unset (and no PREDICTION_LOG_URL): no log."""
    prediction_log_url: str | None = Field(None, pattern=r"^https?://\S+$")
    """Also send each logged request as CloudEvents over HTTP (KServe's logger's shape)."""
    prediction_log_percent: float = Field(100.0, ge=0, le=100)
    """Share of prediction requests logged; model.toml `[prediction_log] percent` overrides."""
    prediction_log_key_header: str | None = Field(
        None, pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$"
    )
    """A header whose value decides in or out by its hash: one key always in, or always out."""
    prediction_log_redact_key: SecretStr | None = None
    """Key of the hash that replaces the features metadata.json lists in `redact`; unset: null."""
    prediction_log_max_bytes: int = Field(100 * 1024 * 1024, ge=4096)
    """A log file is closed and a new one started past this size..."""
    prediction_log_max_age_s: float = Field(3600.0, gt=0)
    """...or this age."""
    prediction_log_max_files: int = Field(100, ge=1, le=100_000)
    """Closed files a worker keeps; its oldest are deleted past this."""
    prediction_log_queue_rows: int = Field(20_000, ge=1, le=10_000_000)
    """Rows waiting for each sink; a request that would pass this is dropped and counted."""
    prediction_log_http_timeout_s: float = Field(2.0, gt=0, le=60)
    """Longest wait for the CloudEvents receiver; an event that takes longer has failed."""
    feedback_max_items: int = Field(1000, ge=1, le=100_000)
    """Items one POST /feedback may carry."""
    feedback_window_s: int = Field(3600, ge=60, le=7 * 86400)
    """The span of the recent accuracy and error figures (also kept in total)."""

    @field_validator(
        "prediction_log_dir",
        "prediction_log_url",
        "prediction_log_key_header",
        "prediction_log_redact_key",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("admin_token", "default_model", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # ADMIN_TOKEN= in a .env file must turn admin off, not accept an empty bearer token.
        return None if isinstance(value, str) and not value.strip() else value


@lru_cache
def settings_from_environment() -> Settings:
    """The settings in the environment (and .env), parsed on first use: for what builds an app
    from them (`python -m app`, `app.main:app`). Code inside an app reads the app's own settings
    (`Runtime.settings`; `app.deps.SettingsDep` in a route), which `create_app(settings)` may
    have been given instead."""
    return Settings()
