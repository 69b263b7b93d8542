"""Open Inference Protocol tensors in gRPC messages, to numpy arrays and back.

An input's data comes either in `raw_input_contents` (one entry per input, in order: the
tensor's bytes, little-endian and row-major; for BYTES a 4-byte little-endian length before
each element), which is what tritonclient.grpc sends, or in its typed `contents` field. Answers
carry every output in `raw_output_contents`. Sizes are checked against the shape before
anything is allocated, so a shape that lies about the data sent costs nothing.

The protocol checks (datatype names, shapes against data, rows, names given twice) and the
binary tensor format are the dataplane's (app.dataplane), shared with HTTP; whether the tensors
fit the model is ml.rows.RowCodec.check_arrays's job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from app.dataplane.binary import datatype_of, dtype_of, tensor_from_bytes, tensor_to_bytes
from app.dataplane.checks import (
    check_input_count,
    check_shape,
    invalid,
    not_given_twice,
    unsupported,
)
from app.dataplane.infer import InferCall
from app.grpc.proto import grpc_predict_v2_pb2 as pb

# Which typed field of InferTensorContents carries each datatype, and the numpy type of that
# field's values. FP16 has none: the protocol sends it as raw bytes only.
CONTENTS_FIELDS: dict[str, tuple[str, np.dtype[Any]]] = {
    "BOOL": ("bool_contents", np.dtype(np.bool_)),
    "UINT8": ("uint_contents", np.dtype(np.uint32)),
    "UINT16": ("uint_contents", np.dtype(np.uint32)),
    "UINT32": ("uint_contents", np.dtype(np.uint32)),
    "UINT64": ("uint64_contents", np.dtype(np.uint64)),
    "INT8": ("int_contents", np.dtype(np.int32)),
    "INT16": ("int_contents", np.dtype(np.int32)),
    "INT32": ("int_contents", np.dtype(np.int32)),
    "INT64": ("int64_contents", np.dtype(np.int64)),
    "FP32": ("fp32_contents", np.dtype(np.float32)),
    "FP64": ("fp64_contents", np.dtype(np.float64)),
    "BYTES": ("bytes_contents", np.dtype(np.object_)),
}
UNSUPPORTED_PARAMETERS = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


def decode_call(request: pb.ModelInferRequest, max_rows: int) -> InferCall:
    """The request's inputs and the outputs it asks for (every output comes back raw)."""
    arrays = decode_inputs(request, max_rows)
    for output in request.outputs:
        unsupported(output.parameters, f"output {output.name!r}", ("classification",))
    wanted = [(output.name, False) for output in request.outputs] or None
    return InferCall(request.id, arrays, wanted, binary_default=False)


def decode_inputs(request: pb.ModelInferRequest, max_rows: int) -> dict[str, np.ndarray]:
    """The request's input tensors as arrays by name; raises InvalidInput naming the input."""
    raw = request.raw_input_contents
    check_input_count(len(request.inputs))
    if raw and len(raw) != len(request.inputs):
        raise invalid(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
            "send one entry for each input, in the order of the inputs"
        )
    arrays: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        where = f"input {tensor.name!r}"
        not_given_twice(tensor.name, arrays)
        unsupported(tensor.parameters, where, UNSUPPORTED_PARAMETERS)
        shape = tuple(tensor.shape)
        check_shape(shape, max_rows, tensor.name)
        dtype = dtype_of(tensor.datatype, where)
        if raw:
            if tensor.HasField("contents"):
                raise invalid(
                    f"{where} has typed contents while the request sends raw_input_contents; "
                    "send every input one way"
                )
            array = tensor_from_bytes(raw[index], tensor.name, tensor.datatype, shape)
        elif tensor.HasField("contents"):
            array = _from_contents(tensor.contents, dtype, tensor.datatype, shape, where)
        else:
            raise invalid(f"{where} has no data: neither contents nor raw_input_contents")
        arrays[tensor.name] = array
    return arrays


def _from_contents(
    contents: pb.InferTensorContents,
    dtype: np.dtype[Any],
    datatype: str,
    shape: tuple[int, ...],
    where: str,
) -> np.ndarray:
    if datatype not in CONTENTS_FIELDS:
        raise invalid(f"{where}: {datatype} has no typed contents; send raw_input_contents")
    field, wire_dtype = CONTENTS_FIELDS[datatype]
    values = getattr(contents, field)
    count = math.prod(shape)
    if len(values) != count:
        sent = [f.name for f, _ in contents.ListFields() if f.name != field]
        hint = f" (values came in {', '.join(sent)})" if sent else ""
        raise invalid(
            f"{where} has {len(values)} values in contents.{field}; its shape {list(shape)} of "
            f"{datatype} holds {count}{hint}"
        )
    if dtype.kind == "O":
        array = np.empty(count, dtype=object)
        try:
            array[:] = [value.decode("utf-8") for value in values]
        except UnicodeDecodeError:
            raise invalid(f"{where}: a BYTES element is not UTF-8") from None
        return array.reshape(shape)
    array = np.array(values, dtype=wire_dtype)
    if dtype != wire_dtype:
        info = np.iinfo(dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise invalid(f"{where}: {datatype} values must lie within {info.min} to {info.max}")
        array = array.astype(dtype)
    return array.reshape(shape)


def encode_response(
    model: str,
    version: int,
    request_id: str,
    raw: Mapping[str, Any],
    outputs: Sequence[str],
) -> pb.ModelInferResponse:
    """The answer: the outputs asked for, as raw_output_contents in the order of `outputs`."""
    response = pb.ModelInferResponse(model_name=model, model_version=str(version), id=request_id)
    for name in outputs:
        array = np.asarray(raw[name])
        response.outputs.add(name=name, datatype=datatype_of(array), shape=array.shape)
        response.raw_output_contents.append(tensor_to_bytes(array))
    return response
