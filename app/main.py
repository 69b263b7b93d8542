"""The app factory: `create_app(settings)` composes the served ASGI app.

Importing this module builds nothing and reads no environment. `python -m app` serves
`app.main:serve_from_environment` in uvicorn's factory mode, in every worker; `app.main:app`, the
name the README gives the ASGI app, is built the same way on first access, for servers started
as `uvicorn app.main:app`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app import __version__
from app.config import Settings, settings_from_environment
from app.edge import HOT_ROUTES, Edge
from app.errors import install_error_handlers
from app.grpc.server import serving_grpc
from app.openapi import document
from app.routes import admin, drift, feedback, health, metrics, models, redoc, ui, v2
from app.runtime import Runtime
from app.v2_infer import INFER_ROUTES

ROUTERS = (
    models.router,
    drift.router,
    health.router,
    admin.router,
    v2.router,
    metrics.router,
    feedback.router,
)
# Swagger UI's and ReDoc's files, served from the installed fastapi-offline package.
DOCS_ASSETS_URL = "/docs-assets"


def create_api(runtime: Runtime) -> FastAPI:
    """The FastAPI app: every route but the hot ones, the OpenAPI document, the lifespan."""

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        # gRPC stops (draining its calls) before the runtime closes the registry.
        async with runtime.running(), serving_grpc(runtime, __version__):
            yield

    about: dict[str, Any] = {
        "title": "ONNX model server",
        "summary": "Serves versioned ONNX models from a model store, strictly and fast.",
        "version": __version__,
        "lifespan": lifespan,
    }
    if runtime.settings.docs_enabled:
        # Swagger UI and ReDoc from the installed package: FastAPI's own pages load them from a
        # CDN, which leaves /docs blank on a cluster without internet access. No online validator
        # badge either (Swagger UI's default sends the spec's URL to swagger.io).
        api: FastAPI = FastAPIOffline(
            static_url=DOCS_ASSETS_URL,
            redoc_url=None,  # app.routes.redoc serves it
            swagger_ui_parameters={"validatorUrl": None},
            **about,
        )
        api.include_router(redoc.router)
    else:
        api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, **about)
    api.state.runtime = runtime  # for app.deps, the one place that reads it
    install_error_handlers(api, runtime.settings.max_errors_listed)
    for router in ROUTERS:
        api.include_router(router)
    ui.install(api, runtime)
    document(api, HOT_ROUTES.values(), INFER_ROUTES)
    return api


def create_app(settings: Settings | None = None, *, owns_process: bool = False) -> Edge:
    """The served app: the edge (request ids, deadlines, metrics, the hot routes) in front of
    the FastAPI app (`Edge.api`). Without `settings`, they are read from the environment.

    Its lifespan changes nothing outside the app unless `owns_process`: then it also sets up
    logging, freezes what is loaded out of the collector's reach and turns readiness off on
    SIGTERM, as the app that a server process serves should."""
    runtime = Runtime(settings or settings_from_environment(), owns_process=owns_process)
    return Edge(create_api(runtime), runtime)


def serve_from_environment() -> Edge:
    """The app a server process serves: settings from the environment, and the process its own
    (`python -m app` calls this in every worker; `app.main:app` is built by it)."""
    return create_app(settings_from_environment(), owns_process=True)


_served: Edge | None = None


def __getattr__(name: str) -> Any:
    # `uvicorn app.main:app`: built once, on first access, not at import.
    global _served
    if name == "app":
        if _served is None:
            _served = serve_from_environment()
        return _served
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
