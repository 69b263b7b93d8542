"""Property-based fuzzing of the request bodies: arbitrary JSON, near-valid predict and batch
bodies, random bytes under random content types, and Open Inference Protocol (V2) infer bodies
with random tensors and binary data whose sizes lie.

Whatever the body, the app answers 2xx or 4xx, never 5xx; a 4xx is problem+json (or
`{"error"}` under /v2) with no traceback and no file path; and a valid request still answers 200
afterwards. Runs are derandomized and keep no example database, so CI sees the same cases every
time; each test prints how many cases it sent, by route.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fuzz_support import (
    VALID_BATCH,
    VALID_PREDICT,
    VALID_V2,
    Tally,
    app_fixtures,
    check_answer,
    store_secrets,
)
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from onnx_factories import write_columns_pipeline, write_int64_input_model

MAX_EXAMPLES = 250
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# name -> (feature, kind) in feature order; kinds: "float", "int" (int64), "str".
MODELS: dict[str, list[tuple[str, str]]] = {
    "iris": [(f, "float") for f in app_fixtures.IRIS_FEATURES],
    "diabetes": [(f, "float") for f in app_fixtures.DIABETES_FEATURES],
    "diabetes_pipeline": [
        (f, "str" if f == "sex" else "float") for f in app_fixtures.DIABETES_FEATURES
    ],
    "counts": [("x0", "int"), ("x1", "int")],  # one int64 [N, 2] tensor
    "columns": [("color", "str"), ("size", "float"), ("count", "int")],  # int64 column
}
# V2 input tensors of each model: name -> (datatype, columns); every one takes [N, columns].
V2_TENSORS: dict[str, dict[str, tuple[str, int]]] = {
    "iris": {"input": ("FP32", 4)},
    "diabetes": {"input": ("FP32", 10)},
    "diabetes_pipeline": {
        f: ("BYTES" if f == "sex" else "FP32", 1) for f in app_fixtures.DIABETES_FEATURES
    },
    "counts": {"x": ("INT64", 2)},
    "columns": {"color": ("BYTES", 1), "size": ("FP32", 1), "count": ("INT64", 1)},
}
V2_INPUTS = {model: {n: t for n, (t, _) in inputs.items()} for model, inputs in V2_TENSORS.items()}
V2_OUTPUTS = ("label", "probabilities", "variable", "y", "output_label", "output_probability")
DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")
DATATYPES += ("FP16", "FP32", "FP64", "BYTES")
HEADER = "Inference-Header-Content-Length"
# Dimensions whose product no machine can allocate, even with memory overcommit on: an array of
# them fails at once instead of filling memory.
HUGE_DIMS = (2**47, 2**62, 2**64)


# -- JSON text, written by hand so that it can hold what json.dumps will not write ------------


@dataclass(frozen=True)
class Raw:
    """JSON text put into the body as it is: deep nesting, lone surrogates, bad literals."""

    text: str


@dataclass(frozen=True)
class Pairs:
    """An object whose keys may repeat."""

    items: tuple[tuple[str, Any], ...]


def dump(value: Any, ascii_only: bool = True) -> str:
    """JSON text; NaN and ±Infinity are written raw (`NaN`, `Infinity`), as a client might."""
    if isinstance(value, Raw):
        return value.text
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=ascii_only)
    if isinstance(value, Pairs | dict):
        items = value.items if isinstance(value, Pairs) else value.items()
        inner = ",".join(f"{dump(k, ascii_only)}:{dump(v, ascii_only)}" for k, v in items)
        return "{" + inner + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump(v, ascii_only) for v in value) + "]"
    raise TypeError(type(value))


def nested(depth: int, leaf: str = "1") -> Raw:
    return Raw("[" * depth + leaf + "]" * depth)


# -- strategies --------------------------------------------------------------------------------

texts = st.text(max_size=12)  # any code point but surrogates: unicode, controls, NUL
EDGE_NUMBERS = [1e308, -1e308, 5e-324, -5e-324, 3.5e38, -3.5e38, 3.4028235e38, 1e39, 0.0, -0.0]
EDGE_NUMBERS += [2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 2**64, -(2**64), 10**30, -1, 0]
EDGE_NUMBERS += [math.nan, math.inf, -math.inf]
BAD_LITERALS = ["-NaN", "+1", "01", "1.", ".5", "1e", "0x10", "Infinity1", "nan", "inf", "None"]
BAD_LITERALS += ["True", "undefined", '"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', "'x'", ""]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | texts
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts, inner, max_size=5),
    max_leaves=25,
)
weird_values = st.one_of(
    st.sampled_from(EDGE_NUMBERS),
    st.sampled_from(["", "1.5", "NaN", "Infinity", "male", "red", "\x00", "\u202e\u0301"]),
    texts,
    st.booleans(),
    st.none(),
    st.floats(),
    st.integers(),
    st.lists(json_scalars, max_size=4),
    st.dictionaries(texts, json_scalars, max_size=3),
    st.integers(1, 600).map(nested),
    st.sampled_from(BAD_LITERALS).map(Raw),
)


def good_value(kind: str, feature: str) -> st.SearchStrategy[Any]:
    if kind == "str":
        return st.sampled_from(["male", "female"] if feature == "sex" else ["red", "green", "blue"])
    if kind == "int":
        return st.integers(0, 9)
    return st.floats(-10, 10) | st.integers(-10, 10)


@st.composite
def rows(draw: st.DrawFn, model: str) -> Any:
    """A row for `model` that is right, or wrong in a few ways: values of the wrong type or out
    of range, missing, unknown or renamed features, the wrong number of values."""
    features = MODELS.get(model, MODELS["iris"])
    values = [
        draw(
            st.one_of(good_value(kind, name), weird_values)
            if draw(st.integers(0, 4)) == 0
            else good_value(kind, name)
        )
        for name, kind in features
    ]
    if draw(st.booleans()):  # a list in feature order
        shape = draw(st.sampled_from(["exact", "exact", "short", "long", "empty"]))
        if shape == "short":
            values = values[: draw(st.integers(0, len(values) - 1))]
        elif shape == "long":
            values += draw(st.lists(weird_values | st.floats(), min_size=1, max_size=3))
        elif shape == "empty":
            values = []
        return values
    items = [(name, value) for (name, _), value in zip(features, values, strict=True)]
    change = draw(st.sampled_from(["none", "none", "drop", "add", "rename", "repeat", "case"]))
    if change == "drop" and items:
        del items[draw(st.integers(0, len(items) - 1))]
    elif change == "add":
        items.append((draw(texts | st.sampled_from(["x0", "petal", "Sex", "\u00e9"])), 1.0))
    elif change == "rename" and items:
        i = draw(st.integers(0, len(items) - 1))
        items[i] = (draw(texts), items[i][1])
    elif change == "repeat" and items:
        items.append((items[0][0], draw(weird_values)))
    elif change == "case" and items:
        items[0] = (items[0][0].upper(), items[0][1])
    return Pairs(tuple(draw(st.permutations(items))))


model_names = st.sampled_from(sorted(MODELS)) | st.sampled_from(
    ["IRIS", "iris ", "../iris", "nope", "", "a" * 65, "ïris", "iris\x00"]
)
versions = st.sampled_from([1, 2, 0, -1, 99, 2**63, 2**64, "1", True, 1.0, None]) | st.integers()
MISSING = object()


@st.composite
def envelope(draw: st.DrawFn, key: str, payload: Callable[[str], st.SearchStrategy[Any]]) -> Any:
    """{"model", "version"?, key: payload}, with keys sometimes missing, wrong or extra."""
    model = draw(model_names)
    items: list[tuple[str, Any]] = []
    model_value = draw(st.sampled_from([model, model, model, MISSING, None, 1, ["iris"]]))
    if model_value is not MISSING:
        items.append(("model", model_value))
    if draw(st.booleans()):
        items.append(("version", draw(versions)))
    if draw(st.integers(0, 9)):
        items.append((key, draw(payload(model))))
    if not draw(st.integers(0, 7)):
        items.append(
            (
                draw(st.sampled_from(["instances", "features", "inputs", "Model"]) | texts),
                draw(json_values),
            )
        )
    return Pairs(tuple(draw(st.permutations(items))))


def batch_of(model: str) -> st.SearchStrategy[Any]:
    return st.lists(rows(model), min_size=0, max_size=4) | weird_values


predict_bodies = envelope("features", rows)
batch_bodies = envelope("instances", batch_of)


@st.composite
def v2_tensor(draw: st.DrawFn, model: str, binary: list[bytes]) -> Any:
    """One input tensor: sometimes right for the model, often wrong in name, shape, datatype,
    data or binary size. Binary data it declares is appended to `binary`, honest or not."""
    inputs = V2_INPUTS.get(model, V2_INPUTS["iris"])
    name = draw(st.sampled_from(sorted(inputs)) | texts)
    datatype = draw(st.sampled_from([inputs.get(name, "FP32")] * 3 + list(DATATYPES)) | texts)
    dim = st.integers(0, 4) | st.sampled_from([-1, 101, *HUGE_DIMS])
    rows_ = draw(st.integers(1, 3) | st.sampled_from([0, -1, 10_001, 2**40]))
    shape = [rows_, *draw(st.lists(dim, max_size=2))] if draw(st.integers(0, 5)) else []
    count = math.prod(shape) if all(isinstance(d, int) and 0 <= d < 100 for d in shape) else 3
    item = {"name": name, "shape": shape, "datatype": datatype}
    how = draw(st.sampled_from(["json", "json", "binary", "binary", "both", "neither", "odd"]))
    if how in ("json", "both"):
        element = {
            "BYTES": texts,
            "BOOL": st.booleans(),
            "FP32": st.floats(width=32),
        }.get(datatype, st.integers(-300, 300))
        length = draw(st.sampled_from([count, count, count + 1, max(count - 1, 0)]))
        data = draw(st.lists(element | weird_values, min_size=length, max_size=length))
        if shape and len(shape) == 2 and shape[1] and len(data) == math.prod(shape):
            data = [data[i : i + shape[1]] for i in range(0, len(data), shape[1])]
        item["data"] = data
    if how in ("binary", "both"):
        itemsize = {"BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2}
        itemsize |= {"UINT32": 4, "INT32": 4, "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8}
        if datatype == "BYTES":
            strings = draw(st.lists(texts, min_size=count, max_size=count))
            blob = b"".join(len(s.encode()).to_bytes(4, "little") + s.encode() for s in strings)
        else:
            blob = bytes(
                draw(
                    st.binary(
                        min_size=count * itemsize.get(datatype, 4),
                        max_size=count * itemsize.get(datatype, 4),
                    )
                )
            )
        if draw(st.integers(0, 3)) == 0:
            blob = draw(st.binary(max_size=40))
        size = draw(st.sampled_from([len(blob)] * 4 + [len(blob) + 1, 0, -1, 2**40, True, "4"]))
        item["parameters"] = {"binary_data_size": size}
        binary.append(blob)
    if how == "odd":
        item["data"] = draw(weird_values)
        if draw(st.booleans()):
            item["parameters"] = draw(
                st.dictionaries(
                    st.sampled_from(["binary_data_size", "shared_memory_region"]) | texts,
                    json_scalars,
                    max_size=2,
                )
            )
    return item


PACK = {"FP32": np.float32, "INT64": np.int64}
MUTATIONS = ("none", "none", "shape", "shape", "datatype", "value", "size", "header", "name")
MUTATIONS += ("outputs", "extra bytes")


def to_binary(datatype: str, values: list[Any]) -> bytes:
    """Triton's binary tensor data: little-endian values, or length-prefixed UTF-8 strings."""
    if datatype == "BYTES":
        encoded = [str(v).encode("utf-8") for v in values]
        return b"".join(len(e).to_bytes(4, "little") + e for e in encoded)
    return np.asarray(values, dtype=np.dtype(PACK[datatype]).newbyteorder("<")).tobytes()


@st.composite
def v2_valid_then_mutated(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    """A request that fits the model, each input as JSON or as binary data, then (mostly) one
    thing wrong with it: a shape, a datatype, a value, a binary size or header that lies, an
    input name, the outputs asked for, bytes left over."""
    model = draw(st.sampled_from(sorted(V2_TENSORS)))
    n = draw(st.integers(1, 3))
    mutation = draw(st.sampled_from(MUTATIONS))
    # The input to spoil: string (BYTES) inputs, whose decoding differs most, twice as often.
    tensors = V2_TENSORS[model]
    victim = draw(
        st.sampled_from(sorted(tensors) + [k for k, v in tensors.items() if v[0] == "BYTES"])
    )
    inputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, (datatype, columns) in V2_TENSORS[model].items():
        value = good_value({"BYTES": "str", "INT64": "int"}.get(datatype, "float"), name)
        values = draw(st.lists(value, min_size=n * columns, max_size=n * columns))
        if datatype == "FP32":
            values = [float(np.float32(v)) for v in values]
        shape: list[Any] = [n, columns]
        tensor: dict[str, Any] = {"name": name, "shape": shape, "datatype": datatype}
        binary = draw(st.booleans())
        if name == victim and mutation == "shape":
            at = draw(st.sampled_from([1, 2, 0]))
            dim = draw(st.sampled_from([*HUGE_DIMS, 0, 10_001, n + 1]))
            shape[at : at + 1] = [dim] if at < 2 else [shape[1], dim]
        if name == victim and mutation == "datatype":
            tensor["datatype"] = draw(st.sampled_from(DATATYPES) | texts)
        if name == victim and mutation == "value" and values:
            values[draw(st.integers(0, len(values) - 1))] = draw(weird_values)
            binary = binary and datatype == "BYTES"
        if name == victim and mutation == "name":
            tensor["name"] = draw(st.sampled_from(sorted(V2_TENSORS[model])) | texts)
        if binary:
            blob = to_binary(datatype, values)
            size: Any = len(blob)
            if name == victim and mutation == "size":
                size = draw(st.sampled_from([size + 1, size - 1, 0, -1, 2**40, 2**64, "4", True]))
            tensor["parameters"] = {"binary_data_size": size}
            blobs.append(blob)
        else:
            tensor["data"] = values
        inputs.append(tensor)
    body: dict[str, Any] = {"inputs": inputs}
    if mutation == "outputs":
        body["outputs"] = [
            {
                "name": draw(st.sampled_from(V2_OUTPUTS) | texts),
                "parameters": {"binary_data": draw(st.booleans() | json_scalars)},
            }
        ]
    if draw(st.booleans()):
        body["parameters"] = {"binary_data_output": draw(st.booleans())}
    text = dump(body).encode("utf-8")
    tail = b"".join(blobs)
    if mutation == "extra bytes":
        tail += draw(st.binary(min_size=1, max_size=8))
    headers = {"content-type": "application/json"}
    if blobs or mutation in ("header", "extra bytes"):
        length: Any = len(text)
        if mutation == "header":
            length = draw(
                st.sampled_from(
                    [
                        len(text) - 1,
                        len(text) + 1,
                        len(text) + len(tail) + 1,
                        0,
                        -1,
                        2**64,
                        "abc",
                        " 1",
                        "1e3",
                        "",
                        None,
                    ]
                )
            )
        if length is not None:
            headers[HEADER] = str(length)
    return f"/v2/models/{model}/infer", text + tail, headers


@st.composite
def v2_random(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) of an infer request with random tensors, JSON or JSON followed by
    binary data, with random outputs, parameters, id, version and header."""
    model = draw(st.sampled_from(sorted(V2_INPUTS)) | st.sampled_from(["nope", "IRIS", "%20"]))
    path = f"/v2/models/{model}/infer"
    if draw(st.integers(0, 4)) == 0:
        version = draw(st.sampled_from(["1", "2", "0", "-1", "01", "x", "99", "1.0", "%C3%A9"]))
        path = f"/v2/models/{model}/versions/{version}/infer"
    binary: list[bytes] = []
    body: dict[str, Any] = {
        "inputs": draw(st.lists(v2_tensor(model, binary), min_size=0, max_size=3))
    }
    if draw(st.booleans()):
        body["outputs"] = draw(
            st.lists(
                st.fixed_dictionaries(
                    {"name": st.sampled_from(V2_OUTPUTS) | texts},
                    optional={
                        "parameters": st.fixed_dictionaries(
                            {}, optional={"binary_data": st.booleans() | json_scalars}
                        )
                    },
                ),
                max_size=3,
            )
        )
    if draw(st.booleans()):
        body["parameters"] = {"binary_data_output": draw(st.booleans() | json_scalars)}
    if draw(st.booleans()):
        body["id"] = draw(texts | st.integers() | st.none())
    if not draw(st.integers(0, 9)):
        body[draw(texts)] = draw(json_values)
    text = dump(body, ascii_only=draw(st.booleans())).encode("utf-8")
    tail = b"".join(binary)
    headers = {
        "content-type": draw(
            st.sampled_from(
                ["application/json"] * 3 + ["application/octet-stream", "text/plain", ""]
            )
        )
    }
    if binary or draw(st.integers(0, 5)) == 0:
        tail += draw(st.sampled_from([b"", b"", b"", b"\x00", b"\xff" * 7]))
        length = draw(
            st.sampled_from(
                [len(text)] * 4
                + [len(text) - 1, len(text) + len(tail) + 1, 0, -1, 2**64, "abc", " 1", "1e3", None]
            )
        )
        if length is not None:
            headers[HEADER] = str(length)
    return path, text + tail, headers


v2_requests = v2_valid_then_mutated() | v2_random()


@st.composite
def v2_binary(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    """One input sent as binary tensor data: any datatype (strings most often), a shape whose
    dimensions may be huge, and a binary_data_size and Inference-Header-Content-Length that are
    right three times in four and lie otherwise."""
    model = draw(st.sampled_from(["diabetes_pipeline", "columns", "iris", "counts"]))
    name = draw(st.sampled_from(sorted(V2_TENSORS[model])))
    datatype = draw(st.sampled_from(["BYTES", "BYTES", "BYTES", *DATATYPES]))
    dims = st.integers(0, 3) | st.sampled_from(HUGE_DIMS)
    shape = [draw(st.integers(1, 3)), *draw(st.lists(dims, max_size=2))]
    count = math.prod(shape)
    if count > 64:  # the data of a huge shape: a few elements, as a client that lies would send
        count = draw(st.integers(0, 3))
    if datatype == "BYTES":
        blob = to_binary("BYTES", draw(st.lists(texts, min_size=count, max_size=count)))
    else:
        width = {"BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2}
        width |= {"UINT32": 4, "INT32": 4, "FP32": 4}
        size_ = count * width.get(datatype, 8)
        blob = draw(st.binary(min_size=size_, max_size=size_))
    if draw(st.integers(0, 3)) == 0:
        blob = draw(st.binary(max_size=16))
    size: Any = len(blob)
    if draw(st.integers(0, 3)) == 0:
        size = draw(st.sampled_from([size + 1, size - 1, 0, -1, 2**40, "1", 1.0, None]))
    parameters = {} if size is None else {"binary_data_size": size}
    text = dump(
        {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "parameters": parameters}]}
    ).encode("utf-8")
    length: Any = len(text)
    if draw(st.integers(0, 3)) == 0:
        length = draw(st.sampled_from([length - 1, length + 1, length + len(blob) + 1, 0, "x"]))
    headers = {"content-type": "application/octet-stream", HEADER: str(length)}
    return f"/v2/models/{model}/infer", text + blob, headers


content_types = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "application/json; charset=latin-1",
            "application/problem+json",
            "application/+json",
            "application/vnd.api+json",
            "application/json;",
            "text/plain",
            "text/json",
            "*/*",
            "application/octet-stream",
            "application/x-www-form-urlencoded",
            "",
            "multipart/form-data; boundary=x",
            ";;;",
            "application/json\tx",
        ]
    ),
    st.text(st.characters(codec="latin-1", exclude_categories=["Cc"]), max_size=40),
)
byte_bodies = st.one_of(
    st.binary(max_size=2048),
    st.binary(max_size=64).map(lambda b: b'{"model": "iris", "features": [' + b),
    st.binary(max_size=64).map(lambda b: b"\xef\xbb\xbf" + json.dumps(VALID_PREDICT).encode() + b),
    st.sampled_from([b"", b"null", b"[]", b"{}", b'""', b"\xff\xfe{\x00}\x00", b"\x00" * 16]),
    st.text(max_size=200).map(lambda s: s.encode("utf-8")),
)
random_paths = st.sampled_from(
    [
        "/predict",
        "/predict/batch",
        "/v2/models/iris/infer",
        "/v2/models/columns/infer",
        "/v2/models/diabetes_pipeline/versions/1/infer",
        "/v2/models/nope/infer",
    ]
)


# -- fixtures and the rule ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo store, plus an int64 tensor model and a per-column pipeline with an int64 and a
    string column."""
    store = app_fixtures.copy_store(tmp_path_factory.mktemp("fuzz_bodies") / "store")
    write_int64_input_model(store / "counts" / "1")
    write_columns_pipeline(store / "columns" / "1")
    return store


@pytest.fixture(scope="module")
def client(store: Path) -> Iterator[Any]:
    with app_fixtures.serve_store(store) as client:
        yield client


class Sender:
    """Sends one fuzzed request, checks the answer by the rule, and checks that valid requests
    still answer 200 after it."""

    def __init__(self, client: Any, store: Path) -> None:
        self.client = client
        self.secrets = store_secrets(store)
        self.tally = Tally()

    def send(self, path: str, body: bytes, headers: dict[str, Any]) -> httpx.Response:
        self.tally.add(path if not path.startswith("/v2/") else "/v2/.../infer")
        note(f"POST {path} headers={headers!r} body={body!r}")
        raw = {k: v.encode("latin-1") for k, v in headers.items()}
        response: httpx.Response = self.client.post(path, content=body, headers=raw)
        check_answer(
            path,
            response.status_code,
            response.headers.multi_items(),
            response.content,
            self.secrets,
        )
        for valid_path, valid in (
            ("/predict", VALID_PREDICT),
            ("/predict/batch", VALID_BATCH),
            ("/v2/models/iris/infer", VALID_V2),
        ):
            after = self.client.post(valid_path, json=valid)
            assert after.status_code == 200, f"{valid_path} after the case: {after.text[:300]}"
        return response

    def report(self, capsys: pytest.CaptureFixture[str], title: str) -> None:
        with capsys.disabled():
            print("\n" + self.tally.report(title))
        assert self.tally.total >= MAX_EXAMPLES


@pytest.fixture
def sender(client: Any, store: Path) -> Sender:
    return Sender(client, store)


JSON = {"content-type": "application/json"}


# -- the tests ---------------------------------------------------------------------------------


def test_arbitrary_json(sender: Sender, capsys: pytest.CaptureFixture[str]) -> None:
    @FUZZ
    @given(
        path=random_paths,
        value=json_values | weird_values,
        ascii_only=st.booleans(),
    )
    @example(path="/predict", value=nested(500), ascii_only=True)
    @example(path="/predict/batch", value=Raw("NaN"), ascii_only=True)
    @example(
        path="/v2/models/iris/infer", value=Raw('{"a":' * 500 + "1" + "}" * 500), ascii_only=True
    )
    def run(path: str, value: Any, ascii_only: bool) -> None:
        sender.send(path, dump(value, ascii_only).encode("utf-8"), JSON)

    run()
    sender.report(capsys, "arbitrary JSON")


def test_near_valid_predict_bodies(sender: Sender, capsys: pytest.CaptureFixture[str]) -> None:
    @FUZZ
    @given(body=predict_bodies, ascii_only=st.booleans())
    @example(body={"model": "counts", "features": [2**63, -(2**64)]}, ascii_only=True)
    @example(
        body={"model": "iris", "features": [3.5e38, 5e-324, math.nan, math.inf]}, ascii_only=True
    )
    @example(body={"model": "iris", "features": nested(500)}, ascii_only=True)
    @example(
        body={
            "model": "diabetes_pipeline",
            "features": dict(
                zip(
                    app_fixtures.DIABETES_FEATURES,
                    [1.0, 2.0, "x", 1, 1, 1, 1, 1, 1, 1],
                    strict=True,
                )
            ),
        },
        ascii_only=True,
    )
    def run(body: Any, ascii_only: bool) -> None:
        sender.send("/predict", dump(body, ascii_only).encode("utf-8"), JSON)

    run()
    sender.report(capsys, "near-valid /predict bodies")


def test_near_valid_batch_bodies(sender: Sender, capsys: pytest.CaptureFixture[str]) -> None:
    @FUZZ
    @given(body=batch_bodies, ascii_only=st.booleans())
    @example(body={"model": "iris", "instances": []}, ascii_only=True)
    @example(
        body={"model": "columns", "instances": [{"color": 1, "size": "red", "count": 2**63}]},
        ascii_only=True,
    )
    def run(body: Any, ascii_only: bool) -> None:
        sender.send("/predict/batch", dump(body, ascii_only).encode("utf-8"), JSON)

    run()
    sender.report(capsys, "near-valid /predict/batch bodies")


def test_random_bytes_and_content_types(sender: Sender, capsys: pytest.CaptureFixture[str]) -> None:
    @FUZZ
    @given(path=random_paths, body=byte_bodies, content_type=content_types)
    def run(path: str, body: bytes, content_type: str | None) -> None:
        headers = {} if content_type is None else {"content-type": content_type}
        sender.send(path, body, headers)

    run()
    sender.report(capsys, "random bytes")


def test_v2_infer_bodies(sender: Sender, capsys: pytest.CaptureFixture[str]) -> None:
    @FUZZ
    @given(request=v2_requests)
    def run(request: tuple[str, bytes, dict[str, str]]) -> None:
        sender.send(*request)

    run()
    sender.report(capsys, "V2 infer bodies")


# A BYTES input whose shape holds 2**47 elements and whose binary data holds none: the decoder
# allocates an object array of the whole shape before it reads a single element (500).
_HUGE = b'{"inputs":[{"name":"input","shape":[1,140737488355328],"datatype":"BYTES",'
_HUGE += b'"parameters":{"binary_data_size":0}}]}'
BYTES_HUGE_SHAPE = (
    "/v2/models/iris/infer",
    _HUGE,
    {"content-type": "application/octet-stream", HEADER: str(len(_HUGE))},
)


def test_v2_binary_tensor_data(sender: Sender, capsys: pytest.CaptureFixture[str]) -> None:
    @FUZZ
    @given(request=v2_binary())
    @example(request=BYTES_HUGE_SHAPE)  # the minimal failing case hypothesis found
    def run(request: tuple[str, bytes, dict[str, str]]) -> None:
        sender.send(*request)

    run()
    sender.report(capsys, "V2 binary tensor data")
