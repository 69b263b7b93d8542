"""Bodies of the Open Inference Protocol (KServe V2) routes, as the spec names their fields.

Requests are strict: unknown keys and loose types are refused. A tensor's `data` is checked
against its `datatype` and `shape` by app.v2_codec, which also reads Triton's binary tensor data.
"""

from __future__ import annotations

from typing import Annotated, Any, NotRequired

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import TypedDict  # pydantic reads typing's own only from Python 3.12

from app.dataplane.checks import MAX_INPUTS

# A parameter's value: the spec allows a string, a number or a boolean.
Parameters = dict[str, str | int | float | bool]
Dimension = Annotated[int, Field(ge=0)]

_STRICT = ConfigDict(extra="forbid", strict=True)


# Requests validate into dicts (TypedDicts) rather than models: the decoder reads each once, and
# dicts cost pydantic a third of the time to build.


@with_config(_STRICT)
class V2RequestInput(TypedDict):
    """One input tensor; `data` is row-major, flat or nested, unless the tensor is sent as binary
    data after the JSON (`parameters.binary_data_size`)."""

    name: str
    shape: list[Dimension]
    datatype: Annotated[
        str, Field(description="BOOL, UINT8-64, INT8-64, FP16, FP32, FP64 or BYTES")
    ]
    parameters: NotRequired[Parameters | None]
    data: NotRequired[Any]


@with_config(_STRICT)
class V2RequestOutput(TypedDict):
    """An output to return; `parameters.binary_data: true` returns it as binary data."""

    name: str
    parameters: NotRequired[Parameters | None]


@with_config(
    ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "42",
                    "inputs": [
                        {
                            "name": "input",
                            "shape": [2, 4],
                            "datatype": "FP32",
                            "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]],
                        }
                    ],
                    "outputs": [{"name": "label"}, {"name": "probabilities"}],
                }
            ]
        },
    )
)
class V2InferRequest(TypedDict):
    """An inference request. Without `outputs`, every tensor output of the model is returned;
    `parameters.binary_data_output: true` returns them as binary data. `model_name` and
    `model_version` (which some clients, KServe's SDK among them, send) must match the URL."""

    id: NotRequired[str | None]
    model_name: NotRequired[
        Annotated[str | None, Field(description="When given, the model the URL names")]
    ]
    model_version: NotRequired[
        Annotated[
            str | None, Field(description="When given and not empty, the version the URL names")
        ]
    ]
    parameters: NotRequired[Parameters | None]
    inputs: Annotated[list[V2RequestInput], Field(min_length=1, max_length=MAX_INPUTS)]
    outputs: NotRequired[list[V2RequestOutput] | None]


class V2ResponseOutput(BaseModel):
    """One output tensor: `data` in row-major order, or `parameters.binary_data_size` bytes of
    binary data after the JSON."""

    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class V2InferResponse(BaseModel):
    """The outputs of an inference, with the request's `id`."""

    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[V2ResponseOutput]


class V2Error(BaseModel):
    """Every error under /v2."""

    error: str


class V2Live(BaseModel):
    live: bool


class V2Ready(BaseModel):
    ready: bool


class V2ModelReady(BaseModel):
    name: str
    ready: bool


class V2ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class V2TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 marks a dynamic dimension")


class V2ModelMetadata(BaseModel):
    name: str
    versions: list[str] = Field(description="The versions that serve now")
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata] = Field(
        description="Tensor outputs; a ZipMap output (a sequence of maps) is not a tensor and "
        "is left out"
    )


def inline_schema(model: type[Any]) -> dict[str, Any]:
    """The JSON Schema of `model` (a pydantic model or a TypedDict) with its nested models
    written in place, for a request body that the route reads itself (its own `$defs` would not
    resolve inside the OpenAPI document)."""
    is_model = isinstance(model, type) and issubclass(model, BaseModel)
    schema = model.model_json_schema() if is_model else TypeAdapter(model).json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    result: dict[str, Any] = resolve(schema)
    return result


def error_docs(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given error statuses of a /v2 route."""
    text = {
        400: "The request does not fit the protocol or the model; or, for a readiness probe, "
        "not ready",
        404: "Unknown model, version or route",
        405: "Method not allowed",
        413: "Body larger than MAX_BODY_BYTES",
        503: "The version exists but does not serve now, or the server is overloaded",
    }
    return {
        status: {"model": V2Error, "description": text.get(status, "Error")} for status in statuses
    }
