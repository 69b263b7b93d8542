"""Request ids and the access log, one line per HTTP request (app.edge) or gRPC call
(app.grpc.calls), in the same form for both."""

from __future__ import annotations

import logging
import re
import time

from app import logs
from app.logs import ACCESS_LOGGER

# A caller's request id (the `x-request-id` header or metadata) is kept when it looks like one.
GIVEN_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")

access_log = logging.getLogger(ACCESS_LOGGER)


def well_formed_id(value: bytes) -> bool:
    """Whether a request id the caller gave is kept (else the server makes one)."""
    return GIVEN_ID.match(value) is not None


def logging_access() -> bool:
    """Whether access lines are written at all (the logger's level allows INFO)."""
    return access_log.isEnabledFor(logging.INFO)


def log_access(
    *,
    client: str | None,
    method: str,
    path: str,
    route: str,
    status: int,
    seconds: float,
    request_id: str,
    model: str,
    version: str,
    grpc_code: str | None = None,
) -> None:
    """One access line: `client "METHOD path" status duration`, with the request's fields as
    the record's extras (LOG_FORMAT=json writes them). `grpc_code` names a gRPC call's status,
    whose number `status` is."""
    message = (
        f'{client or "-"} "{method} {path}" {status if grpc_code is None else grpc_code} '
        f"{seconds * 1000:.2f}ms"
    )
    writer = logs.line_writer
    if writer is not None and not writer.json:
        # The line a TextFormatter makes of the record, made without one (logging's record,
        # formatter and handler cost more than the request's own work).
        writer.write(logs.text_line(time.time(), "INFO", ACCESS_LOGGER, message))
        return
    fields = {
        "request_id": request_id,
        "method": method,
        "path": path,
        "route": route,
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "model": model or None,
        "version": version or None,
        "client": client,
    }
    if grpc_code is not None:
        fields["grpc_code"] = grpc_code
    if writer is None:  # logging set up by whoever embeds the app: through its handlers
        access_log.info(message, extra=fields)
    else:
        writer.write(logs.json_record(time.time(), "info", ACCESS_LOGGER, message, fields))
