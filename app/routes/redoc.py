"""GET /redoc: ReDoc over /openapi.json, from the bundle that fastapi-offline installs, less the
one thing that bundle fetches from elsewhere: the Redocly logo of its sidebar, loaded from
Redocly's CDN (on a cluster without internet access, a failed request and a console error)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html
from starlette.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)

BUNDLE_URL = "/redoc-assets/redoc.standalone.js"
CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
# An empty image of no size: the sidebar keeps its "API docs by Redocly" link, without a logo.
NO_LOGO = b"data:image/svg+xml,%3Csvg xmlns=%27http://www.w3.org/2000/svg%27 width=%270%27/%3E"


def shipped_bundle() -> Path:
    return Path(fastapi_offline.__file__).parent / "static" / "redoc.standalone.js"


@cache
def bundle() -> bytes:
    return shipped_bundle().read_bytes().replace(CDN_LOGO, NO_LOGO)


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{BUNDLE_URL}",
        redoc_favicon_url="data:,",
        with_google_fonts=False,
    )


@router.get(BUNDLE_URL)
async def redoc_bundle() -> Response:
    return Response(bundle(), media_type="text/javascript; charset=utf-8")
