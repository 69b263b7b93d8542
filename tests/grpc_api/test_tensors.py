"""Protocol tensors in gRPC messages to arrays and back (app.grpc.tensors), without a server."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from app.errors import failure
from app.grpc import tensors
from app.grpc.proto import grpc_predict_v2_pb2 as pb
from ml.errors import InvalidInput

MAX_ROWS = 100


def request(*inputs: tuple[str, str, list[int]], raw: list[bytes] | None = None):
    message = pb.ModelInferRequest(model_name="m")
    for name, datatype, shape in inputs:
        message.inputs.add(name=name, datatype=datatype, shape=shape)
    if raw is not None:
        message.raw_input_contents.extend(raw)
    return message


def problem(message) -> str:
    with pytest.raises(InvalidInput) as caught:
        tensors.decode_inputs(message, MAX_ROWS)
    assert failure(caught.value).grpc.name == "INVALID_ARGUMENT"
    return caught.value.detail


def bytes_tensor(*values: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


@pytest.mark.parametrize(
    ("datatype", "dtype"),
    [("FP32", np.float32), ("FP64", np.float64), ("FP16", np.float16), ("INT64", np.int64),
     ("INT8", np.int8), ("UINT16", np.uint16), ("BOOL", np.bool_)],
)  # fmt: skip
def test_raw_tensors_read_back_as_sent(datatype, dtype):
    values = np.array([[1, 0, 1], [0, 1, 1]], dtype=dtype)
    arrays = tensors.decode_inputs(
        request(
            ("x", datatype, [2, 3]), raw=[values.astype(values.dtype.newbyteorder("<")).tobytes()]
        ),
        MAX_ROWS,
    )
    assert arrays["x"].dtype == dtype
    np.testing.assert_array_equal(arrays["x"], values)


def test_raw_bytes_are_length_prefixed_utf8():
    arrays = tensors.decode_inputs(
        request(("color", "BYTES", [3, 1]), raw=[bytes_tensor(b"red", "grün".encode(), b"")]),
        MAX_ROWS,
    )
    assert arrays["color"].dtype == object
    assert arrays["color"].ravel().tolist() == ["red", "grün", ""]


def test_typed_contents_of_each_field():
    message = request(("a", "FP32", [1, 2]), ("b", "INT8", [1, 2]), ("c", "BYTES", [1, 1]))
    message.inputs[0].contents.fp32_contents.extend([1.5, -2.0])
    message.inputs[1].contents.int_contents.extend([-128, 127])
    message.inputs[2].contents.bytes_contents.append(b"blue")
    arrays = tensors.decode_inputs(message, MAX_ROWS)
    np.testing.assert_array_equal(arrays["a"], np.array([[1.5, -2.0]], dtype=np.float32))
    assert arrays["b"].dtype == np.int8 and arrays["b"].tolist() == [[-128, 127]]
    assert arrays["c"].tolist() == [["blue"]]


def test_a_shape_that_claims_more_than_was_sent_allocates_nothing():
    # 2**40 rows of 4 floats would be 16 TiB; the bytes sent are counted first.
    detail = problem(request(("x", "FP32", [2**40, 4]), raw=[b"\x00" * 16]))
    assert "x" in detail and "rows" in detail  # over MAX_BATCH_ROWS before anything else
    detail = problem(request(("x", "FP32", [3, 2**40]), raw=[b"\x00" * 16]))
    assert "input 'x' has 16 bytes of binary data" in detail
    assert "takes 13194139533312" in detail


def test_bytes_elements_are_counted_before_allocation():
    detail = problem(request(("s", "BYTES", [50, 2**30]), raw=[bytes_tensor(b"a", b"b")]))
    assert "input 's' has 2 BYTES elements; its shape holds 53687091200" in detail


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\x05\x00\x00", "ends inside an element's length"),
        (b"\x09\x00\x00\x00abc", "element 0 runs past its data"),
        (b"\x02\x00\x00\x00\xff\xfe", "element 0 is not UTF-8"),
    ],
)
def test_malformed_bytes_tensors(raw, expected):
    assert expected in problem(request(("s", "BYTES", [1, 1]), raw=[raw]))


def test_protocol_mistakes_name_the_input():
    assert "datatype 'FP8'" in problem(request(("x", "FP8", [1]), raw=[b"\x00"]))
    assert "dimensions must not be negative" in problem(request(("x", "FP32", [-1, 4]), raw=[b""]))
    assert "raw_input_contents has 1 entries for 2 inputs" in problem(
        request(("x", "FP32", [1]), ("y", "FP32", [1]), raw=[b"\x00" * 4])
    )
    assert "input 'x' is given twice" in problem(
        request(("x", "FP32", [1]), ("x", "FP32", [1]), raw=[b"\x00" * 4] * 2)
    )
    assert "input 'x' has no data" in problem(request(("x", "FP32", [1])))
    assert "BOOL bytes must be 0 or 1" in problem(request(("x", "BOOL", [1]), raw=[b"\x02"]))


def test_typed_contents_mistakes():
    message = request(("x", "FP32", [1, 2]))
    message.inputs[0].contents.int_contents.extend([1, 2])
    assert "0 values in contents.fp32_contents" in problem(message)
    assert "(values came in int_contents)" in problem(message)
    message = request(("x", "FP16", [1]))
    message.inputs[0].contents.fp32_contents.append(1.0)
    assert "FP16 has no typed contents; send raw_input_contents" in problem(message)
    message = request(("x", "UINT8", [1]))
    message.inputs[0].contents.uint_contents.append(300)
    assert "UINT8 values must lie within 0 to 255" in problem(message)


def test_answers_are_raw_and_in_the_order_asked():
    raw = {
        "label": np.array(["setosa", "virginica"], dtype=object),
        "probabilities": np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32),
    }
    response = tensors.encode_response("iris", 2, "7", raw, ["probabilities", "label"])
    assert (response.model_name, response.model_version, response.id) == ("iris", "2", "7")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("probabilities", "FP32", [2, 2]),
        ("label", "BYTES", [2]),
    ]
    probabilities = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(2, 2)
    np.testing.assert_array_equal(probabilities, raw["probabilities"])
    assert response.raw_output_contents[1] == bytes_tensor(b"setosa", b"virginica")
