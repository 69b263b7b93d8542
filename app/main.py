"""The ASGI app: `app.main:app`."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app import __version__
from app.config import Settings, get_settings
from app.errors import install_error_handlers, is_v2
from app.fastpath import FastPathApp
from app.grpc.server import serving_grpc
from app.logs import configure_logging
from app.metrics import Metrics
from app.observe import ObservedApp
from app.routes import admin, health, metrics, models, predict, redoc, ui, v2
from app.schemas import BatchRequest, PredictRequest, Problem
from app.shutdown import not_ready_on_sigterm
from app.v2_schemas import V2Error
from ml.registry import ModelRegistry
from ml.store import StoreScanner
from ml.watch import StoreWatcher

log = logging.getLogger(__name__)

DOCS_ASSETS_URL = "/docs-assets"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Owns the registry and the watcher: models load in the background while the process
    already answers liveness, and readiness turns 200 once they are in."""
    settings: Settings = app.state.settings
    configure_logging(settings.log_level, settings.log_format)
    # Everything imported so far lives as long as the process: moved out of the collector's
    # reach, a full collection no longer walks ~60k objects (~15 ms) in the middle of requests.
    gc.collect()
    gc.freeze()
    registry = ModelRegistry(
        StoreScanner(settings.model_store), settings.default_model, app.state.metrics
    )
    watcher = StoreWatcher(registry, settings.poll_interval_s)
    app.state.registry = registry
    app.state.watcher = watcher
    app.state.draining = False
    with not_ready_on_sigterm(app.state):
        async with (
            app.state.metrics.flushing(),
            watcher.running(),
            serving_grpc(app.state, app.version),
        ):
            yield
            app.state.draining = True
    await registry.close()
    app.state.metrics.flush()  # runs that ended while the versions closed


def _error_bodies_as_served(schema: dict[str, Any]) -> None:
    """Document error answers as they are sent: problem+json on the service's routes, and under
    /v2 the protocol's `{"error"}` with 400 where FastAPI would have documented a 422."""
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if is_v2(path):
                if responses.pop("422", None) is not None and "400" not in responses:
                    responses["400"] = {
                        "description": "The request does not fit the protocol or the model",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/V2Error"}}
                        },
                    }
                continue
            for status, response in responses.items():
                if int(status) >= 400:
                    response["content"] = problem


def _customize_openapi(app: FastAPI) -> None:
    """Add the bodies that the predict routes read themselves, and the real error bodies."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (PredictRequest, BatchRequest, Problem, V2Error):
                definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(definition.pop("$defs", {}))
                components[model.__name__] = definition
            _error_bodies_as_served(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_fastapi(settings: Settings | None = None) -> FastAPI:
    """The FastAPI app: every route, the OpenAPI document, the lifespan."""
    settings = settings or get_settings()
    about: dict[str, Any] = {
        "title": "ONNX model server",
        "summary": "Serves versioned ONNX models from a model store, strictly and fast.",
        "version": __version__,
        "lifespan": lifespan,
    }
    if settings.docs_enabled:
        # Swagger UI and ReDoc served from the installed package: FastAPI's own pages load them
        # from a CDN, which leaves /docs blank on a cluster without internet access. No online
        # validator badge either (Swagger UI's default sends the spec's URL to swagger.io).
        app = FastAPIOffline(
            static_url=DOCS_ASSETS_URL,
            redoc_url=None,  # app.routes.redoc serves it
            swagger_ui_parameters={"validatorUrl": None},
            **about,
        )
        app.include_router(redoc.router)
    else:
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, **about)
    app.state.settings = settings
    app.state.metrics = Metrics()
    install_error_handlers(app)
    app.include_router(predict.router)
    app.include_router(models.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(v2.router)
    app.include_router(metrics.router)
    ui.install(app)
    _customize_openapi(app)
    return app


def create_app(settings: Settings | None = None) -> ObservedApp:
    """The served app: request ids, logs, metrics and timeouts around the predict fast path,
    which hands every other route to FastAPI. Tests pass their own settings."""
    api = create_fastapi(settings)
    settings = api.state.settings
    return ObservedApp(
        FastPathApp(api),
        api.state.metrics,
        timeout_s=settings.request_timeout_s,
        access_log_on=settings.access_log,
        inner_tags_responses=True,
    )


app = create_app()
