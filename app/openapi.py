"""The OpenAPI document: FastAPI's, plus the routes the edge answers itself (documented from the
HotRoute and InferRoute entries that serve them) and the error bodies as they are really sent."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from app.dataplane.binary import HEADER_LENGTH
from app.edge import HotRoute
from app.errors import is_v2
from app.responses import problem_docs
from app.schemas import Problem
from app.v2_infer import InferRoute
from app.v2_schemas import V2Error, V2InferRequest, V2InferResponse, error_docs, inline_schema

HOT_ROUTE_ERRORS = (400, 404, 405, 413, 415, 422, 503)
INFER_ERRORS = (400, 404, 405, 413, 415, 503)
V2_TAG = "open inference protocol"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _hot_operation(route: HotRoute) -> dict[str, Any]:
    doc = inspect.getdoc(route.answer) or ""
    return {
        "tags": [route.tag],
        "summary": doc.split("\n", 1)[0].rstrip("."),
        "description": doc,
        "operationId": route.answer.__name__,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref(route.request)}},
        },
        "responses": {
            "200": {
                "description": "Successful Response",
                "content": {"application/json": {"schema": _ref(route.response)}},
            },
            **{str(status): doc for status, doc in problem_docs(*HOT_ROUTE_ERRORS).items()},
        },
    }


def _infer_operation(route: InferRoute) -> dict[str, Any]:
    parameters = [("name", "Model name")]
    if route.versioned:
        parameters.append(("version", "Model version, a positive integer"))
    errors = error_docs(*INFER_ERRORS)
    return {
        "tags": [V2_TAG],
        "summary": route.summary,
        "description": route.summary + ".",
        "operationId": "infer_version" if route.versioned else "infer",
        "parameters": [
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": text,
                "schema": {"type": "string", "title": name.title()},
            }
            for name, text in parameters
        ],
        "requestBody": {
            "required": True,
            "description": f"JSON; or, with the {HEADER_LENGTH} header, that many bytes of "
            "JSON followed by the binary tensor data of the inputs that set binary_data_size.",
            "content": {
                "application/json": {"schema": inline_schema(V2InferRequest)},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "responses": {
            "200": {
                "description": f"JSON; or, with the {HEADER_LENGTH} header, that many bytes of "
                "JSON followed by the binary data of the outputs asked for as binary data",
                "content": {"application/json": {"schema": _ref(V2InferResponse)}},
            },
            **{
                str(status): {
                    "description": doc["description"],
                    "content": {"application/json": {"schema": _ref(V2Error)}},
                }
                for status, doc in errors.items()
            },
        },
    }


def _error_bodies_as_served(schema: dict[str, Any]) -> None:
    """Document error answers as they are sent: problem+json on the service's routes, and under
    /v2 the protocol's `{"error"}` with 400 where FastAPI would have documented a 422."""
    problem = {"application/problem+json": {"schema": _ref(Problem)}}
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if is_v2(path):
                if responses.pop("422", None) is not None and "400" not in responses:
                    responses["400"] = {
                        "description": "The request does not fit the protocol or the model",
                        "content": {"application/json": {"schema": _ref(V2Error)}},
                    }
                continue
            for status, response in responses.items():
                if int(status) >= 400:
                    response["content"] = problem


def document(
    api: FastAPI, hot_routes: Iterable[HotRoute], infer_routes: Iterable[InferRoute]
) -> None:
    """Make `api.openapi()` describe the whole served app."""
    original = api.openapi
    routes = list(hot_routes)
    infers = list(infer_routes)

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = original()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            models = {
                Problem,
                V2Error,
                V2InferResponse,
                *(m for r in routes for m in (r.request, r.response)),
            }
            for model in sorted(models, key=lambda m: m.__name__):
                definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(definition.pop("$defs", {}))
                components[model.__name__] = definition
            hot = {route.path: {"post": _hot_operation(route)} for route in routes}
            hot |= {route.path: {"post": _infer_operation(route)} for route in infers}
            schema["paths"] = {**hot, **schema["paths"]}
            _error_bodies_as_served(schema)
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
