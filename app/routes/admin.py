"""Admin routes, behind a bearer token."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from app.deps import SettingsDep, WatcherDep
from app.errors import HTTPProblem
from app.responses import json_response, problem_docs
from app.schemas import ReloadResult


def require_admin(request: Request, settings: SettingsDep) -> None:
    """403 when no ADMIN_TOKEN is set; 401 for a missing or wrong bearer token."""
    token = settings.admin_token
    if token is None:
        raise HTTPProblem(403, "Forbidden", "admin routes are off: set ADMIN_TOKEN to use them")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # compare_digest takes as long for a wrong token as for a right one of the same length.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.get_secret_value().encode()
    ):
        raise HTTPProblem(
            401,
            "Unauthorized",
            "send 'Authorization: Bearer <ADMIN_TOKEN>'",
            headers={"WWW-Authenticate": 'Bearer realm="admin"'},
        )


router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses=problem_docs(401, 403),
)


@router.post("/reload", response_model=ReloadResult)
async def reload(watcher: WatcherDep) -> Response:
    """Rescan the store now; answers once the changes are in effect."""
    report = await watcher.reload_now()
    return json_response(
        {"loaded": report.loaded, "unloaded": report.unloaded, "failed": report.failed}
    )
