"""Fast JSON answers and the OpenAPI description of error answers."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def problem_docs(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given error statuses; their problem+json body is
    documented for every route at once (app.openapi)."""
    text = {
        400: "Malformed JSON",
        401: "Missing or wrong bearer token",
        403: "Admin routes are off (no ADMIN_TOKEN)",
        404: "Unknown model or version",
        405: "Method not allowed (see Allow)",
        413: "Body larger than MAX_BODY_BYTES",
        415: "Content type is not JSON",
        422: "The body does not fit the model; `errors` names each field",
        503: "Not ready, loading, or overloaded (see Retry-After)",
    }
    return {status: {"description": text.get(status, "Error")} for status in statuses}
