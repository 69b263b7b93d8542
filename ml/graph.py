"""What the server reads from an ONNX file beyond onnxruntime's API: a classifier's classes.

onnxruntime exposes inputs, outputs and the producer, but not node attributes. The classes live
in the graph: in the `classlabels_*` attribute of an `ai.onnx.ml` classifier or ZipMap, or, for
converters that pick the label with `ArrayFeatureExtractor` (skl2onnx's MLP and k-NN), in the
constant tensor it indexes. Reading them with the `onnx` package would make it (and a full copy
of every tree in memory) a server dependency; protobuf, which onnxruntime already depends on,
parses the file with a schema of the few fields read here, declared below with the field numbers
of onnx.proto. Fields not declared (weights, tree nodes) are skipped by the parser.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from ml.files import MODEL_MAX_BYTES, read_bytes

__all__ = ["Classes", "read_classes"]

Classes = tuple[int, ...] | tuple[str, ...]

# Ops that pass their first input through unchanged in value: the label output of skl2onnx
# classifiers is often a Cast or Reshape of the class picked further up.
_PASS_THROUGH = frozenset({"Cast", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten"})
_CLASSIFIER_OPS = frozenset(
    {"TreeEnsembleClassifier", "LinearClassifier", "SVMClassifier", "ZipMap"}
)
_ML_DOMAIN = "ai.onnx.ml"
# onnx.TensorProto.DataType values whose classes can be read.
_INT_TYPES = frozenset({2, 3, 4, 5, 6, 7, 12, 13})  # uint8..int64, uint32, uint64
_STRING_TYPE = 8

# (message, [(field name, number, type, repeated, message type)]), numbers as in onnx.proto.
_I64, _BYTES, _MSG, _I32 = (
    descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
    descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
    descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
)
_SCHEMA: list[tuple[str, list[tuple[str, int, int, bool, str | None]]]] = [
    (
        "Tensor",
        [
            ("dims", 1, _I64, True, None),
            ("data_type", 2, _I32, False, None),
            ("int32_data", 5, _I32, True, None),
            ("string_data", 6, _BYTES, True, None),
            ("int64_data", 7, _I64, True, None),
            ("name", 8, _BYTES, False, None),
            ("raw_data", 9, _BYTES, False, None),
        ],
    ),
    (
        "Attribute",
        [
            ("name", 1, _BYTES, False, None),
            ("t", 5, _MSG, False, "Tensor"),
            ("ints", 8, _I64, True, None),
            ("strings", 9, _BYTES, True, None),
        ],
    ),
    (
        "Node",
        [
            ("input", 1, _BYTES, True, None),
            ("output", 2, _BYTES, True, None),
            ("op_type", 4, _BYTES, False, None),
            ("attribute", 5, _MSG, True, "Attribute"),
            ("domain", 7, _BYTES, False, None),
        ],
    ),
    (
        "Graph",
        [
            ("node", 1, _MSG, True, "Node"),
            ("initializer", 5, _MSG, True, "Tensor"),
        ],
    ),
    ("Model", [("graph", 7, _MSG, False, "Graph")]),
]


@cache
def _model_class() -> Any:
    """The message class of the schema above, built once per process."""
    file = descriptor_pb2.FileDescriptorProto(
        name="model_server_onnx_subset.proto", package="model_server.onnx", syntax="proto2"
    )
    for message_name, fields in _SCHEMA:
        message = file.message_type.add(name=message_name)
        for field_name, number, kind, repeated, type_name in fields:
            message.field.add(
                name=field_name,
                number=number,
                type=kind,
                label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
                if repeated
                else descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
                type_name=f".model_server.onnx.{type_name}" if type_name else None,
            )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("model_server.onnx.Model"))


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _tensor_values(tensor: Any) -> Classes | None:
    """The values of a 1-D integer or string tensor, or None for any other tensor."""
    data_type = tensor.data_type
    if data_type == _STRING_TYPE:
        return tuple(_text(s) for s in tensor.string_data)
    if data_type not in _INT_TYPES:
        return None
    if tensor.raw_data:
        import numpy as np  # only here: the rest of this module needs no numpy

        dtype = {2: "u1", 3: "i1", 4: "u2", 5: "i2", 6: "i4", 7: "i8", 12: "u4", 13: "u8"}
        return tuple(int(v) for v in np.frombuffer(tensor.raw_data, dtype="<" + dtype[data_type]))
    return tuple(int(v) for v in (tensor.int64_data or tensor.int32_data))


def _attribute_classes(node: Any) -> Classes | None:
    for attribute in node.attribute:
        name = _text(attribute.name)
        if name == "classlabels_strings" and attribute.strings:
            return tuple(_text(s) for s in attribute.strings)
        if name in ("classlabels_int64s", "classlabels_ints") and attribute.ints:
            return tuple(int(v) for v in attribute.ints)
    return None


def _constants(graph: Any) -> dict[str, Any]:
    """Initializers and Constant nodes' tensors, by name."""
    found = {_text(t.name): t for t in graph.initializer}
    for node in graph.node:
        if _text(node.op_type) == "Constant" and node.output:
            for attribute in node.attribute:
                if _text(attribute.name) == "value":
                    found[_text(node.output[0])] = attribute.t
    return found


def _producers(graph: Any) -> dict[str, Any]:
    return {_text(out): node for node in graph.node for out in node.output}


def _trace(graph: Any, output: str) -> Classes | None:
    """Follow the label output back to the node that chose the class."""
    producers = _producers(graph)
    constants: dict[str, Any] | None = None
    name = output
    for _ in range(len(producers) + 1):  # a graph is acyclic; the bound only guards bad files
        node = producers.get(name)
        if node is None:
            return None
        op_type = _text(node.op_type)
        if op_type in _CLASSIFIER_OPS and _text(node.domain) == _ML_DOMAIN:
            return _attribute_classes(node)
        if op_type == "ArrayFeatureExtractor" and node.input:
            constants = constants if constants is not None else _constants(graph)
            tensor = constants.get(_text(node.input[0]))
            return None if tensor is None or len(tensor.dims) > 1 else _tensor_values(tensor)
        if op_type not in _PASS_THROUGH or not node.input:
            return None
        name = _text(node.input[0])
    return None


def _only_classifier(graph: Any, width: int | None) -> Classes | None:
    """The classes of the one classifier op of the graph whose class count fits, if just one."""
    found = {
        classes
        for node in graph.node
        if _text(node.op_type) in _CLASSIFIER_OPS and _text(node.domain) == _ML_DOMAIN
        for classes in [_attribute_classes(node)]
        if classes is not None and (width is None or len(classes) == width)
    }
    return found.pop() if len(found) == 1 else None


def _read_model(path: Path) -> Any:
    # Checked when the version loaded; read as untrusted again all the same, as it may have
    # been replaced since.
    return _model_class().FromString(read_bytes(path, within=None, limit=MODEL_MAX_BYTES))


def read_classes(path: Path, label_output: str, width: int | None) -> Classes | None:
    """The classes behind `label_output` of the model at `path`, in probability-column order.

    Found by following the label output back to a classifier op or to the constant tensor an
    `ArrayFeatureExtractor` picks from; failing that, the one classifier op whose class count is
    `width`. None when the graph does not say (a hand-built model). Blocking: call at load.
    """
    graph = _read_model(path).graph
    return _trace(graph, label_output) or _only_classifier(graph, width)
