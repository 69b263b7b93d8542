"""Open Inference Protocol request and answer bodies over HTTP, as JSON or with binary data.

Binary data is Triton's binary tensor data extension (app.dataplane.binary): with the request
header `Inference-Header-Content-Length: N`, the first N bytes of the body are the JSON request
and the rest are the raw tensors of the inputs that carry `parameters.binary_data_size`, in
order. Outputs asked for with `binary_data` (or the request's `binary_data_output`) come back the
same way after the JSON answer, whose size is then in the same header.

This module checks what the protocol says (datatype names, shape against data, JSON value types,
binary sizes, `model_name` and `model_version` against the URL); whether the tensors fit the
model is ml.rows.RowCodec.check_arrays's job.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
from pydantic import TypeAdapter, ValidationError

from app.body import parse_json, validate
from app.dataplane.binary import (
    HEADER_LENGTH,
    datatype_of,
    dtype_of,
    split_body,
    tensor_from_bytes,
    tensor_to_bytes,
)
from app.dataplane.checks import check_shape, invalid, not_given_twice, quoted, unsupported
from app.dataplane.infer import InferCall
from app.errors import HTTPProblem
from app.v2_schemas import V2InferRequest, V2RequestInput
from ml.rows import RANGE_ERRORS, StrictValue, strict_value

# Tensors of up to this many JSON values are checked in Python rather than numpy.
SMALL_TENSOR = 256

# -- requests ----------------------------------------------------------------------------------


def decode_request(
    body: bytes, header_length: str | None, max_rows: int, name: str, version: str | None
) -> InferCall:
    """Parse and check an infer request body sent to the URL of model `name` (and `version`,
    None for the default); raises a 400 that says what is wrong."""
    json_part, binary = split_body(body, header_length)
    try:
        payload = parse_json(json_part)
    except HTTPProblem as exc:
        if header_length is None and "trailing" in exc.detail:
            hint = f" (binary data after the JSON needs the {HEADER_LENGTH} header)"
            raise invalid(exc.detail + hint) from None
        raise
    if type(payload) is not dict:
        raise invalid("the body must be a JSON object: an inference request")
    request = validate(V2InferRequest, payload)
    _addressed(request, name, version)
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for tensor in request["inputs"]:
        name, shape = tensor["name"], tensor["shape"]
        not_given_twice(name, arrays)
        check_shape(shape, max_rows, name)
        size = _binary_size(tensor)
        if size is None:
            arrays[name] = _from_json(tensor)
            continue
        if header_length is None:
            raise invalid(
                f"input {name!r} sets binary_data_size but the request has no "
                f"{HEADER_LENGTH} header to say where the binary data starts"
            )
        if offset + size > len(binary):
            raise invalid(
                f"input {name!r} needs {size} bytes of binary data; only "
                f"{len(binary) - offset} are left after the JSON"
            )
        chunk = binary[offset : offset + size]
        arrays[name] = tensor_from_bytes(chunk, name, tensor["datatype"], shape)
        offset += size
    if offset != len(binary):
        raise invalid(
            f"{len(binary) - offset} bytes after the JSON belong to no input's binary_data_size"
        )
    return InferCall(request.get("id"), arrays, *_requested_outputs(request))


def _addressed(request: V2InferRequest, name: str, version: str | None) -> None:
    """`model_name` and `model_version` in the body (KServe's SDK sends them) must say what the
    URL says; an empty `model_version` means none, as over gRPC."""
    given_name = request.get("model_name")
    if given_name is not None and given_name != name:
        raise invalid(
            f"model_name: the body names model {quoted(given_name)} but the URL "
            f"names {quoted(name)}; leave it out or make them agree",
            ("model_name",),
        )
    given = request.get("model_version") or None
    if given is not None and given != version:
        url = "no version (the default)" if version is None else f"version {quoted(version)}"
        raise invalid(
            f"model_version: the body names version {quoted(given)} but the URL names {url}; "
            "leave it out or make them agree",
            ("model_version",),
        )


def _parameter(
    parameters: Mapping[str, Any] | None, key: str, kind: type, where: str
) -> Any | None:
    value = None if parameters is None else parameters.get(key)
    if value is not None and type(value) is not kind:
        raise invalid(f"{where}: parameter {key!r} must be {kind.__name__}; got {value!r}")
    return value


def _binary_size(tensor: V2RequestInput) -> int | None:
    """The size of the tensor's binary data, or None when its values are in `data`."""
    parameters = tensor.get("parameters")
    size: int | None = None
    if parameters:  # a plain JSON tensor has none: nothing to check
        where = f"input {tensor['name']!r}"
        unsupported(parameters, where, ("shared_memory_region",))
        size = _parameter(parameters, "binary_data_size", int, where)
    if size is None:
        if tensor.get("data") is None:
            raise invalid(f"input {tensor['name']!r} has no data (nor binary_data_size)")
        return None
    if size < 0:
        raise invalid(
            f"input {tensor['name']!r}: binary_data_size must not be negative; got {size}"
        )
    if tensor.get("data") is not None:
        raise invalid(
            f"input {tensor['name']!r} has both data and binary_data_size; send one of them"
        )
    return size


def _from_json(tensor: V2RequestInput) -> np.ndarray:
    where = f"input {tensor['name']!r}"
    datatype, shape, data = tensor["datatype"], tensor["shape"], tensor.get("data")
    dtype = dtype_of(datatype, where)
    if type(data) is not list:
        raise invalid(f"{where}: data must be a list of values (flat or nested)")
    values = _flatten(data, where)
    count = math.prod(shape)
    if len(values) != count:
        raise invalid(f"{where} has {len(values)} values but its shape {shape} holds {count}")
    adapter, value = _value_adapter(datatype)
    try:
        checked = adapter.validator.validate_python(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        expected = value.in_range if first["type"] in RANGE_ERRORS else value.expected
        raise invalid(
            f"{where}: value {first['loc'][0]} must be {expected} ({datatype}); "
            f"got {repr(first['input'])[:40]}"
        ) from None
    if dtype.kind == "f" and dtype != np.float64:
        array = _narrow_floats(checked, dtype, where)
    else:
        array = np.array(checked, dtype=dtype)
    return array.reshape(shape)


def _flatten(data: list[Any], where: str) -> list[Any]:
    """Nested lists, row-major, as one flat list."""
    while data and type(data[0]) is list:
        if any(type(item) is not list for item in data):
            raise invalid(f"{where}: data mixes lists and values at one level")
        data = list(itertools.chain.from_iterable(data))
    return data


@functools.cache
def _value_adapter(datatype: str) -> tuple[TypeAdapter[list[Any]], StrictValue]:
    """What the JSON values of `datatype` must be: a strict check of a flat list, and how to
    say what is wrong. NaN, Infinity and null (a missing number or string) pass here; the
    model's missing-value rule (ml.rows.unusable_value) decides by input."""
    value = strict_value(dtype_of(datatype, "an input"), finite=False, missing=True)
    return TypeAdapter(list[value.annotation]), value  # type: ignore[name-defined]


def _narrow_floats(values: list[Any], dtype: np.dtype[Any], where: str) -> np.ndarray:
    """JSON numbers as `dtype` (FP32, FP16), refusing finite values that `dtype` cannot hold;
    null becomes NaN, for the model's missing-value rule to judge."""
    limit = _largest(dtype)
    if len(values) <= SMALL_TENSOR:
        # A few values are checked quicker one by one than through numpy's calls.
        too_large = any(v is not None and limit < abs(v) < math.inf for v in values)
    else:
        wide = np.array(values, dtype=np.float64)
        finite = wide[np.isfinite(wide)]
        too_large = bool(finite.size) and float(np.abs(finite).max()) > limit
    if too_large:
        raise invalid(f"{where}: values must lie within ±{limit:.6g} ({dtype})")
    return np.array(values, dtype=dtype)


@functools.cache
def _largest(dtype: np.dtype[Any]) -> float:
    return float(np.finfo(dtype).max)


def _requested_outputs(
    request: V2InferRequest,
) -> tuple[list[tuple[str, bool]] | None, bool]:
    default = bool(_parameter(request.get("parameters"), "binary_data_output", bool, "the request"))
    outputs = request.get("outputs")
    if not outputs:
        return None, default
    wanted: dict[str, bool] = {}
    for output in outputs:
        where = f"output {output['name']!r}"
        parameters = output.get("parameters")
        unsupported(parameters, where, ("classification", "shared_memory_region"))
        if output["name"] in wanted:
            raise invalid(f"{where} is asked for twice")
        binary = _parameter(parameters, "binary_data", bool, where)
        wanted[output["name"]] = default if binary is None else binary
    return list(wanted.items()), default


# -- answers -----------------------------------------------------------------------------------


def encode_response(
    model: str,
    version: int,
    request_id: str | None,
    raw: Mapping[str, Any],
    outputs: Sequence[tuple[str, bool]],
) -> tuple[bytes, int | None]:
    """The answer body, and the size of its JSON part when binary outputs follow it."""
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, binary in outputs:
        array = np.asarray(raw[name])
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            blob = tensor_to_bytes(array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif datatype == "BYTES":
            entry["data"] = [v if type(v) is str else _text(v) for v in array.ravel().tolist()]
        else:
            entry["data"] = array.ravel()  # C-contiguous, as orjson needs, whatever the input
        entries.append(entry)
    answer: dict[str, Any] = {"model_name": model, "model_version": str(version)}
    if request_id is not None:
        answer["id"] = request_id
    answer["outputs"] = entries
    header = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
