"""RFC 9457 problem details: the one error body of the service's own routes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from starlette.responses import Response

PROBLEM_MEDIA_TYPE = "application/problem+json"


class HTTPProblem(Exception):
    """An error raised by the HTTP layer itself (body, content type, auth), as a problem."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: Iterable[Mapping[str, Any]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})

    def response(self) -> Response:
        return problem_response(self.status, self.title, self.detail, self.errors, self.headers)


def problem_response(
    status: int,
    title: str,
    detail: str,
    errors: Iterable[Mapping[str, Any]] = (),
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A problem+json response; `type` is a stable slug of the title clients can branch on."""
    body = {
        "type": "/problems/" + title.lower().replace(" ", "-"),
        "title": title,
        "status": status,
        "detail": detail,
        "errors": [{"loc": list(e["loc"]), "msg": e["msg"]} for e in errors],
    }
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )
