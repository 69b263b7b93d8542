"""Request bodies: read once from ASGI, bounded; parsed by orjson (pydantic-core where orjson
refuses); validated by a schema's own validator. Every route that reads a body reads it here.
"""

from __future__ import annotations

from functools import cache
from itertools import islice
from typing import Any, TypeVar

import orjson
import pydantic_core
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import SchemaValidator
from starlette.types import Message, Receive, Scope

from app.errors import HTTPProblem, validation_problem
from ml.errors import MAX_FIELD_ERRORS

Model = TypeVar("Model")

JSON_MEDIA_TYPE = b"application/json"
# pydantic's words for a key the schema does not have.
EXTRA_KEY = "Extra inputs are not permitted"


def _is_json(content_type: bytes) -> bool:
    media = content_type.partition(b";")[0].strip().lower()
    return media == JSON_MEDIA_TYPE or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


def body_too_large(max_bytes: int, declared: int | None = None) -> HTTPProblem:
    if declared is not None:
        return HTTPProblem(
            413, "Body too large", f"the body has {declared} bytes; the limit is {max_bytes}"
        )
    return HTTPProblem(413, "Body too large", f"the body passed the limit of {max_bytes} bytes")


def body_cut_short() -> HTTPProblem:
    """The body stopped before its end: the client left, or took longer than BODY_TIMEOUT_S
    (app.connections answers it then, and this is what the access log records)."""
    detail = "the body did not arrive in full within BODY_TIMEOUT_S"
    return HTTPProblem(408, "Request timeout", detail, headers={"Connection": "close"})


async def read_body(scope: Scope, receive: Receive, max_bytes: int, json_only: bool) -> bytes:
    """The raw body, refused with 413 as soon as it would pass `max_bytes` (whatever
    `Content-Length` claims, chunked or not), and with 415 unless it is JSON when `json_only`
    or when it is compressed (`Content-Encoding`: refused before it is read, as it would be
    once read)."""
    content_type = b""
    encoding: bytes | None = None
    declared: int | None = None
    for key, value in scope["headers"]:
        if key == b"content-type":
            content_type = value
        elif key == b"content-length" and value.isdigit():
            declared = int(value)
        elif key == b"content-encoding":
            encoding = value
    # The usual header needs no parsing.
    if json_only and content_type != JSON_MEDIA_TYPE and not _is_json(content_type):
        raise HTTPProblem(
            415,
            "Unsupported media type",
            "send the body as JSON with 'Content-Type: application/json'",
        )
    if encoding and encoding.strip().lower() != b"identity":
        shown = encoding.strip().decode("latin-1")[:40]
        raise HTTPProblem(415, "Unsupported media type", f"Content-Encoding {shown} is not read")
    if declared is not None and declared > max_bytes:
        raise body_too_large(max_bytes, declared)
    message: Message = await receive()
    if message["type"] == "http.disconnect":
        raise body_cut_short()
    body: bytes = message.get("body", b"")
    if len(body) > max_bytes:  # a chunked body may arrive whole in one message
        raise body_too_large(max_bytes)
    if not message.get("more_body", False):
        return body
    parts = bytearray(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise body_cut_short()
        parts += message.get("body", b"")
        if len(parts) > max_bytes:
            raise body_too_large(max_bytes)
    return bytes(parts)


def parse_json(body: bytes | memoryview) -> Any:
    """The parsed body, or 400. NaN and Infinity are parsed so that validation can refuse them
    by field with a 422."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    # orjson refuses NaN, Infinity and integers past 64 bits: pydantic-core reads those, so that
    # they get a 422 naming their field, and says what is wrong with a truly malformed body.
    try:
        return pydantic_core.from_json(body, allow_inf_nan=True)
    except ValueError as exc:
        raise HTTPProblem(400, "Malformed JSON", f"the body is not valid JSON: {exc}") from None


@cache
def _schema(schema: type[Any]) -> tuple[frozenset[str], SchemaValidator]:
    """A body schema's keys and its core validator, once per schema: a pydantic model, or a
    TypedDict (whose bodies validate into plain dicts). pydantic's `model_fields` runs a Python
    descriptor on every read, and TypeAdapter.validate_python adds a layer of Python per call."""
    if issubclass(schema, BaseModel):
        return frozenset(schema.model_fields), schema.__pydantic_validator__
    keys = schema.__required_keys__ | schema.__optional_keys__
    return frozenset(keys), TypeAdapter(schema).validator


def validate(schema: type[Model], payload: Any) -> Model:
    """`payload` checked against `schema`, or a 422 naming each field at fault."""
    fields, validator = _schema(schema)
    if type(payload) is dict and len(payload) > len(fields):
        # Unknown keys, named here: pydantic would build an error for every one of them, and a
        # body can hold millions.
        unknown = (key for key in payload if key not in fields)
        extra = [{"loc": (key,), "msg": EXTRA_KEY} for key in islice(unknown, MAX_FIELD_ERRORS)]
        count = len(payload) - sum(name in payload for name in fields)
        raise validation_problem(extra, count)
    try:
        return validator.validate_python(payload)  # type: ignore[no-any-return]
    except ValidationError as exc:
        count = exc.error_count()
        if count > MAX_FIELD_ERRORS:  # listing them all would cost more than the request
            detail = f"{count} fields of the body do not fit its schema, too many to list"
            raise HTTPProblem(422, "Invalid input", detail, count=count) from None
        raise validation_problem(exc.errors(include_url=False)) from None
