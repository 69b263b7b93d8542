"""The binary tensor format, shared by HTTP (Triton's binary tensor data extension) and gRPC
(`raw_input_contents` / `raw_output_contents`): a tensor's elements little-endian and row-major;
BYTES elements each a 4-byte little-endian length followed by that many bytes.

Over HTTP, the request header `Inference-Header-Content-Length: N` says that the first N bytes of
the body are the JSON request and the rest are the tensors of the inputs that set
`parameters.binary_data_size`, in order; an answer with binary outputs carries the same header.

Sizes are checked against the shape before anything is allocated, so a shape that lies about
the data sent costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.dataplane.checks import invalid, quoted
from ml.signature import BY_DTYPE, BY_V2

HEADER_LENGTH = "Inference-Header-Content-Length"


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON part of an HTTP infer body and the binary data after it, as
    `Inference-Header-Content-Length` (None when the request has no such header) divides them."""
    view = memoryview(body)
    if header_length is None:
        return body, view[len(view) :]
    if not (header_length.isascii() and header_length.isdigit()):
        raise invalid(f"{HEADER_LENGTH} must be a number of bytes; got {quoted(header_length)}")
    digits = header_length.lstrip("0") or "0"
    # Compared by length first: a number longer than the body's size is larger than it, and
    # int() refuses texts past Python's digit limit.
    if len(digits) > len(str(len(body))) or int(digits) > len(body):
        shown = digits if len(digits) <= 20 else f"a number of {len(digits)} digits"
        raise invalid(f"{HEADER_LENGTH} is {shown} but the body has {len(body)} bytes")
    size = int(digits)
    return body[:size], view[size:]


def dtype_of(datatype: str, where: str) -> np.dtype[Any]:
    """The numpy dtype of a protocol datatype name; InvalidInput naming `where`."""
    found = BY_V2.get(datatype)
    if found is None:
        raise invalid(
            f"{where} has datatype {quoted(datatype)}; this server reads " + ", ".join(BY_V2)
        )
    return found.dtype


def datatype_of(array: np.ndarray) -> str:
    """The protocol datatype name of an output array (the inverse of `dtype_of`)."""
    return BY_DTYPE[array.dtype].v2


def tensor_from_bytes(
    data: bytes | memoryview, name: str, datatype: str, shape: Sequence[int]
) -> np.ndarray:
    """One input tensor from its binary data; the shape must already be checked
    (checks.check_shape). InvalidInput names the input when the data does not fit."""
    where = f"input {name!r}"
    dtype = dtype_of(datatype, where)
    chunk = memoryview(data)
    count = math.prod(shape)
    if dtype.kind == "O":
        # Read (and count) what was sent before allocating what the shape claims.
        strings = read_strings(chunk, count, where)
        array = np.empty(count, dtype=object)
        array[:] = strings
    else:
        expected = count * dtype.itemsize
        if len(chunk) != expected:
            raise invalid(
                f"{where} has {len(chunk)} bytes of binary data; shape {list(shape)} of "
                f"{datatype} takes {expected}"
            )
        raw = np.frombuffer(chunk, dtype=dtype.newbyteorder("<"))
        if dtype.kind == "b" and (raw.view(np.uint8) > 1).any():
            raise invalid(f"{where}: BOOL bytes must be 0 or 1")
        array = raw.astype(dtype)  # a copy: aligned, writable, native byte order
    return array.reshape(shape)


def read_strings(chunk: memoryview, count: int, where: str) -> list[str]:
    """BYTES elements: each a 4-byte little-endian length, then that many UTF-8 bytes."""
    strings: list[str] = []
    offset = 0
    while offset < len(chunk):
        if offset + 4 > len(chunk):
            raise invalid(f"{where}: BYTES data ends inside an element's length")
        length = int.from_bytes(chunk[offset : offset + 4], "little")
        offset += 4
        if offset + length > len(chunk):
            raise invalid(f"{where}: BYTES element {len(strings)} runs past its data")
        try:
            strings.append(str(chunk[offset : offset + length], "utf-8"))
        except UnicodeDecodeError:
            raise invalid(f"{where}: BYTES element {len(strings)} is not UTF-8") from None
        offset += length
    if len(strings) != count:
        raise invalid(f"{where} has {len(strings)} BYTES elements; its shape holds {count}")
    return strings


def tensor_to_bytes(array: np.ndarray) -> bytes:
    """An output tensor as binary data."""
    if array.dtype.kind != "O":
        return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    parts = []
    for value in array.ravel().tolist():
        data = value if isinstance(value, bytes) else str(value).encode("utf-8")
        parts.append(len(data).to_bytes(4, "little"))
        parts.append(data)
    return b"".join(parts)
