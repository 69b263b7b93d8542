"""Open Inference Protocol tensors to numpy arrays and back, as JSON or as binary data.

Binary data is Triton's binary tensor data extension: with the request header
`Inference-Header-Content-Length: N`, the first N bytes of the body are the JSON request and the
rest are the raw tensors of the inputs that carry `parameters.binary_data_size`, in order:
little-endian, row-major, and for BYTES a 4-byte little-endian length before each element.
Outputs asked for with `binary_data` (or the request's `binary_data_output`) come back the same
way after the JSON answer, whose size is then in the same header.

This module checks what the protocol says (datatype names, shape against data, JSON value types,
binary sizes); whether the tensors fit the model is ml.rows.RowCodec.check_arrays's job.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from pydantic import TypeAdapter, ValidationError

from app.body import parse_json, too_many_rows, validate
from app.errors import HTTPProblem
from app.v2_schemas import V2InferRequest, V2RequestInput
from ml.rows import RANGE_ERRORS, StrictValue, strict_value
from ml.signature import BY_DTYPE, BY_ONNX, BY_V2, Signature

HEADER_LENGTH = "Inference-Header-Content-Length"


def bad_request(message: str) -> HTTPProblem:
    """A 400; under /v2 it answers `{"error": message}`."""
    return HTTPProblem(400, "Bad request", message)


@dataclass(frozen=True, slots=True)
class InferCall:
    """A decoded request: its id, input arrays by name, and each output to return with whether
    it goes back as binary data (`None`: every tensor output, binary if `binary_default`)."""

    id: str | None
    arrays: dict[str, np.ndarray]
    outputs: list[tuple[str, bool]] | None
    binary_default: bool


# -- requests ----------------------------------------------------------------------------------


def decode_request(body: bytes, header_length: str | None, max_rows: int) -> InferCall:
    """Parse and check an infer request body; raises a 400 that says what is wrong."""
    view = memoryview(body)
    if header_length is None:
        json_part, binary = body, view[len(view) :]
    else:
        if not (header_length.isascii() and header_length.isdigit()):
            raise bad_request(f"{HEADER_LENGTH} must be a number of bytes; got {header_length!r}")
        size = int(header_length)
        if size > len(body):
            raise bad_request(f"{HEADER_LENGTH} is {size} but the body has {len(body)} bytes")
        json_part, binary = body[:size], view[size:]
    try:
        payload = parse_json(json_part)
    except HTTPProblem as exc:
        if header_length is None and "trailing" in exc.detail:
            hint = f" (binary data after the JSON needs the {HEADER_LENGTH} header)"
            raise bad_request(exc.detail + hint) from None
        raise
    if type(payload) is not dict:
        raise bad_request("the body must be a JSON object: an inference request")
    request = validate(V2InferRequest, payload)
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for tensor in request.inputs:
        if tensor.name in arrays:
            raise bad_request(f"input {tensor.name!r} is given twice")
        if tensor.shape:
            too_many_rows(tensor.shape[0], max_rows, ("inputs", tensor.name))
        size = _binary_size(tensor)
        if size is None:
            arrays[tensor.name] = _from_json(tensor)
            continue
        if header_length is None:
            raise bad_request(
                f"input {tensor.name!r} sets binary_data_size but the request has no "
                f"{HEADER_LENGTH} header to say where the binary data starts"
            )
        if offset + size > len(binary):
            raise bad_request(
                f"input {tensor.name!r} needs {size} bytes of binary data; only "
                f"{len(binary) - offset} are left after the JSON"
            )
        arrays[tensor.name] = _from_binary(tensor, binary[offset : offset + size])
        offset += size
    if offset != len(binary):
        raise bad_request(
            f"{len(binary) - offset} bytes after the JSON belong to no input's binary_data_size"
        )
    return InferCall(request.id, arrays, *_requested_outputs(request))


def _parameter(
    parameters: Mapping[str, Any] | None, key: str, kind: type, where: str
) -> Any | None:
    value = None if parameters is None else parameters.get(key)
    if value is not None and type(value) is not kind:
        raise bad_request(f"{where}: parameter {key!r} must be {kind.__name__}; got {value!r}")
    return value


def _unsupported(parameters: Mapping[str, Any] | None, where: str, *keys: str) -> None:
    for key in keys:
        if parameters is not None and key in parameters:
            raise bad_request(f"{where}: parameter {key!r} is not supported by this server")


def _binary_size(tensor: V2RequestInput) -> int | None:
    where = f"input {tensor.name!r}"
    _unsupported(tensor.parameters, where, "shared_memory_region")
    size: int | None = _parameter(tensor.parameters, "binary_data_size", int, where)
    if size is not None:
        if size < 0:
            raise bad_request(f"{where}: binary_data_size must not be negative; got {size}")
        if tensor.data is not None:
            raise bad_request(f"{where} has both data and binary_data_size; send one of them")
    elif tensor.data is None:
        raise bad_request(f"{where} has no data (nor binary_data_size)")
    return size


def dtype_of(datatype: str, where: str) -> np.dtype[Any]:
    """The numpy dtype of a protocol datatype name (HTTP and gRPC); a 400 naming `where`."""
    found = BY_V2.get(datatype)
    if found is None:
        raise bad_request(
            f"{where} has datatype {datatype!r}; this server reads " + ", ".join(BY_V2)
        )
    return found.dtype


def _dtype(tensor: V2RequestInput) -> np.dtype[Any]:
    return dtype_of(tensor.datatype, f"input {tensor.name!r}")


def _from_json(tensor: V2RequestInput) -> np.ndarray:
    dtype = _dtype(tensor)
    where = f"input {tensor.name!r}"
    if type(tensor.data) is not list:
        raise bad_request(f"{where}: data must be a list of values (flat or nested)")
    values = _flatten(tensor.data, where)
    count = math.prod(tensor.shape)
    if len(values) != count:
        raise bad_request(
            f"{where} has {len(values)} values but its shape {tensor.shape} holds {count}"
        )
    adapter, value = _value_adapter(tensor.datatype)
    try:
        checked = adapter.validate_python(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        expected = value.in_range if first["type"] in RANGE_ERRORS else value.expected
        raise bad_request(
            f"{where}: value {first['loc'][0]} must be {expected} ({tensor.datatype}); "
            f"got {repr(first['input'])[:40]}"
        ) from None
    if dtype.kind == "f":
        array = _narrow_floats(np.array(checked, dtype=np.float64), dtype, where)
    else:
        array = np.array(checked, dtype=dtype)
    return array.reshape(tensor.shape)


def _flatten(data: list[Any], where: str) -> list[Any]:
    """Nested lists, row-major, as one flat list."""
    while data and type(data[0]) is list:
        if any(type(item) is not list for item in data):
            raise bad_request(f"{where}: data mixes lists and values at one level")
        data = list(itertools.chain.from_iterable(data))
    return data


@functools.cache
def _value_adapter(datatype: str) -> tuple[TypeAdapter[list[Any]], StrictValue]:
    """What the JSON values of `datatype` must be: a strict check of a flat list, and how to
    say what is wrong. NaN, Infinity and null (a missing number or string) pass here; the
    model's missing-value rule (ml.rows.unusable_value) decides by input."""
    value = strict_value(BY_V2[datatype].dtype, finite=False, missing=True)
    return TypeAdapter(list[value.annotation]), value  # type: ignore[name-defined]


def _narrow_floats(values: np.ndarray, dtype: np.dtype[Any], where: str) -> np.ndarray:
    """float64 values as `dtype`, refusing finite values that `dtype` cannot hold."""
    if dtype != np.float64:
        limit = float(np.finfo(dtype).max)
        finite = values[np.isfinite(values)]
        if finite.size and float(np.abs(finite).max()) > limit:
            raise bad_request(f"{where}: values must lie within ±{limit:.6g} ({dtype})")
    return values.astype(dtype)


def _from_binary(tensor: V2RequestInput, chunk: memoryview) -> np.ndarray:
    dtype = _dtype(tensor)
    where = f"input {tensor.name!r}"
    count = math.prod(tensor.shape)
    if dtype.kind == "O":
        # Read (and count) what was sent before allocating what the shape claims.
        strings = _read_strings(chunk, count, where)
        array = np.empty(count, dtype=object)
        array[:] = strings
    else:
        expected = count * dtype.itemsize
        if len(chunk) != expected:
            raise bad_request(
                f"{where} has {len(chunk)} bytes of binary data; shape {tensor.shape} of "
                f"{tensor.datatype} takes {expected}"
            )
        raw = np.frombuffer(chunk, dtype=dtype.newbyteorder("<"))
        if dtype.kind == "b" and (raw.view(np.uint8) > 1).any():
            raise bad_request(f"{where}: BOOL bytes must be 0 or 1")
        array = raw.astype(dtype)  # a copy: aligned, writable, native byte order
    return array.reshape(tensor.shape)


def _read_strings(chunk: memoryview, count: int, where: str) -> list[str]:
    """BYTES elements: each a 4-byte little-endian length, then that many UTF-8 bytes."""
    strings: list[str] = []
    offset = 0
    while offset < len(chunk):
        if offset + 4 > len(chunk):
            raise bad_request(f"{where}: BYTES data ends inside an element's length")
        length = int.from_bytes(chunk[offset : offset + 4], "little")
        offset += 4
        if offset + length > len(chunk):
            raise bad_request(f"{where}: BYTES element {len(strings)} runs past its data")
        try:
            strings.append(str(chunk[offset : offset + length], "utf-8"))
        except UnicodeDecodeError:
            raise bad_request(f"{where}: BYTES element {len(strings)} is not UTF-8") from None
        offset += length
    if len(strings) != count:
        raise bad_request(f"{where} has {len(strings)} BYTES elements; its shape holds {count}")
    return strings


def _requested_outputs(
    request: V2InferRequest,
) -> tuple[list[tuple[str, bool]] | None, bool]:
    default = bool(_parameter(request.parameters, "binary_data_output", bool, "the request"))
    if not request.outputs:
        return None, default
    wanted: dict[str, bool] = {}
    for output in request.outputs:
        where = f"output {output.name!r}"
        _unsupported(output.parameters, where, "classification", "shared_memory_region")
        if output.name in wanted:
            raise bad_request(f"{where} is asked for twice")
        binary = _parameter(output.parameters, "binary_data", bool, where)
        wanted[output.name] = default if binary is None else binary
    return list(wanted.items()), default


# -- model metadata and responses --------------------------------------------------------------


def output_datatypes(signature: Signature) -> dict[str, str | None]:
    """Each output's datatype, or None for one that is not a tensor (a ZipMap)."""
    return {info.name: v2_datatype(info.onnx_type) for info in signature.outputs}


def v2_datatype(onnx_type: str) -> str | None:
    """The protocol's name of an ONNX type; None for a type that is not a tensor the protocol
    can carry (a ZipMap's sequence of maps)."""
    datatype = BY_ONNX.get(onnx_type)
    return None if datatype is None else datatype.v2


def dims(shape: Sequence[int | None]) -> list[int]:
    """A shape as the protocol writes it: -1 for a dynamic dimension."""
    return [-1 if d is None else d for d in shape]


def select_outputs(call: InferCall, signature: Signature, model: str) -> list[tuple[str, bool]]:
    """The outputs to return, with their binary flag; a ZipMap output is left out unless asked
    for by name, which is a 400 (it is a sequence of maps, not a tensor)."""
    datatypes = output_datatypes(signature)
    if call.outputs is None:
        return [(name, call.binary_default) for name, kind in datatypes.items() if kind]
    for name, _ in call.outputs:
        if name not in datatypes:
            raise bad_request(
                f"model {model} has no output {name!r}; its outputs are " + ", ".join(datatypes)
            )
        if datatypes[name] is None:
            tensors = ", ".join(n for n, kind in datatypes.items() if kind) or "none"
            raise bad_request(
                f"output {name!r} is a sequence of maps (a ZipMap), not a tensor; the tensor "
                f"outputs of {model} are {tensors}"
            )
    return call.outputs


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
        datatype = BY_DTYPE[array.dtype].v2
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            blob = _to_binary(array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif datatype == "BYTES":
            entry["data"] = [_text(v) for v in array.ravel().tolist()]
        else:
            entry["data"] = np.ascontiguousarray(array).ravel()
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


def _to_binary(array: np.ndarray) -> bytes:
    if array.dtype.kind != "O":
        return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    parts = []
    for value in array.ravel().tolist():
        data = value if isinstance(value, bytes) else str(value).encode("utf-8")
        parts.append(len(data).to_bytes(4, "little"))
        parts.append(data)
    return b"".join(parts)
