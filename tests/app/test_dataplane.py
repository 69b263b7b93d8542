"""The dataplane's pieces without a server: the binary tensor format against numpy's own bytes,
the body split by Inference-Header-Content-Length, version numbers, shape checks and the offload
rule."""

from __future__ import annotations

import asyncio
import struct
import threading

import numpy as np
import pytest

from app.dataplane import binary, checks, infer
from app.dataplane.resolve import version_number
from ml.errors import InvalidInput, ModelNotFound


class OneModel:
    """A registry that knows one model, as version_number asks it."""

    def get(self, name: str) -> object:
        if name != "iris":
            raise ModelNotFound(f"model {name!r} not found")
        return object()


def refused(call, *args) -> str:
    with pytest.raises(InvalidInput) as caught:
        call(*args)
    return caught.value.detail


@pytest.mark.parametrize(
    ("array", "datatype"),
    [
        (np.arange(12, dtype=np.float32).reshape(3, 4) / 7, "FP32"),
        (np.array([[1.5], [-2.25]], dtype=np.float16), "FP16"),
        (np.array([[-(2**62)], [2**62]], dtype=np.int64), "INT64"),
        (np.array([[True, False]]), "BOOL"),
        (np.array([["rot", "grün"], ["", "blue"]], dtype=object), "BYTES"),
    ],
)
def test_tensor_bytes_round_trip(array, datatype):
    data = binary.tensor_to_bytes(array)
    if datatype != "BYTES":
        assert data == array.astype(array.dtype.newbyteorder("<")).tobytes()
    else:
        expected = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in array.flat)
        assert data == expected

    back = binary.tensor_from_bytes(data, "x", datatype, list(array.shape))

    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.tolist() == array.tolist()
    assert binary.datatype_of(back) == datatype


def test_tensor_from_bytes_checks_the_size_against_the_shape():
    detail = refused(binary.tensor_from_bytes, b"\0" * 12, "x", "FP32", [1, 4])
    assert "input 'x' has 12 bytes of binary data; shape [1, 4] of FP32 takes 16" in detail


def test_split_body():
    body = b'{"inputs": []}' + b"\1\2\3"
    json_part, rest = binary.split_body(body, "14")
    assert (json_part, bytes(rest)) == (b'{"inputs": []}', b"\1\2\3")
    assert bytes(binary.split_body(body, None)[1]) == b""
    assert binary.split_body(body, "0017")[0] == body


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        ("18", "is 18 but the body has 17 bytes"),
        ("9" * 5000, "is a number of 5000 digits but the body has 17 bytes"),
        ("-1", "must be a number of bytes"),
        ("x" * 5000, "..."),
    ],
)
def test_split_body_refuses_a_header_length_that_does_not_fit(header, fragment):
    detail = refused(binary.split_body, b"x" * 17, header)
    assert fragment in detail
    assert len(detail) < 200


@pytest.mark.parametrize(("given", "number"), [(None, None), ("2", 2), ("007", 7)])
def test_version_numbers(given, number):
    assert version_number(OneModel(), "iris", given) == number


@pytest.mark.parametrize("given", ["0", "000", "-1", "1.0", "²", "latest", "9" * 19, "9" * 5000])
def test_a_version_that_cannot_exist_is_not_found(given):
    with pytest.raises(ModelNotFound) as caught:
        version_number(OneModel(), "iris", given)
    assert "has no version" in caught.value.detail
    assert len(caught.value.detail) < 200


def test_an_unknown_model_is_named_before_its_version():
    with pytest.raises(ModelNotFound, match="model 'wine' not found"):
        version_number(OneModel(), "wine", "x")


@pytest.mark.parametrize(
    ("shape", "fragment"),
    [
        ([0, 2**62], "multiply past"),
        ([2, 0, 2**40, 2**20], "multiply past"),
        ([3, -1], "must not be negative"),
        ([101, 4], "input 'x' has 101 rows; at most 100 rows per request (MAX_BATCH_ROWS)"),
    ],
)
def test_shapes_that_no_request_could_fill_are_refused(shape, fragment):
    assert fragment in refused(checks.check_shape, shape, 100, "x")


@pytest.mark.parametrize("shape", [[0, 4], [100, 4], [2**20, 0, 2**30], []])
def test_shapes_a_request_could_fill_pass(shape):
    checks.check_shape(shape, 2**20, "x")

    if 0 in shape:  # numpy takes the empty tensors that pass
        assert np.empty(0, dtype=np.float64).reshape(shape).size == 0


def test_names_given_twice_and_unsupported_parameters():
    assert refused(checks.not_given_twice, "a", {"a": 1}) == "input 'a' is given twice"
    detail = refused(
        checks.unsupported,
        {"shared_memory_region": "r"},
        "input 'a'",
        ["x", "shared_memory_region"],
    )
    assert detail == "input 'a': parameter 'shared_memory_region' is not supported by this server"


def test_offload_runs_small_work_inline_and_large_work_in_a_thread():
    async def where(size: int) -> int:
        return await infer.offload(size, threading.get_ident)

    async def both() -> tuple[int, int, int]:
        return (
            threading.get_ident(),
            await where(infer.INLINE_BYTES),
            await where(infer.INLINE_BYTES + 1),
        )

    loop_thread, small, large = asyncio.run(both())

    assert small == loop_thread
    assert large != loop_thread
