"""The vendored .proto, its generated modules and the command that regenerates them.

The generated modules must be exactly what `python -m app.grpc.proto.regenerate` writes from the
.proto in the repo, and that .proto must define the same messages, fields and methods (names,
numbers, types) as KServe's reference in ../shared/schemas/kserve.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tritonclient.grpc.service_pb2 as triton_pb2
from google.protobuf import descriptor_pb2

from app.grpc.proto import grpc_predict_v2_pb2 as pb
from app.grpc.proto.regenerate import OUTPUTS, PROTO

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO.parent / "shared" / "schemas" / "kserve" / "grpc_predict_v2.proto"


def test_the_generated_modules_are_what_the_command_writes(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "app.grpc.proto.regenerate", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for name in OUTPUTS:
        committed = (PROTO.parent / name).read_text(encoding="utf-8")
        assert (tmp_path / name).read_text(encoding="utf-8") == committed, (
            f"{name} is stale: run `python -m app.grpc.proto.regenerate` and commit the result"
        )


def _reference_descriptor(tmp_path: Path) -> descriptor_pb2.FileDescriptorProto:
    from grpc_tools import protoc

    if not REFERENCE.is_file():
        pytest.fail(f"KServe's reference proto is expected at {REFERENCE}")
    out = tmp_path / "reference.pb"
    status = protoc.main(
        ["protoc", f"-I{REFERENCE.parent}", f"--descriptor_set_out={out}", REFERENCE.name]
    )
    assert status == 0
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]


def _shape(file: descriptor_pb2.FileDescriptorProto) -> dict[str, object]:
    """Everything that reaches the wire: package, messages with their fields, service methods."""

    def fields(message: descriptor_pb2.DescriptorProto, prefix: str) -> dict[str, object]:
        found: dict[str, object] = {
            f"{prefix}{message.name}.{f.name}": (f.number, f.type, f.label, f.type_name)
            for f in message.field
        }
        for nested in message.nested_type:
            found.update(fields(nested, f"{prefix}{message.name}."))
        return found

    shape: dict[str, object] = {"package": file.package}
    for message in file.message_type:
        shape.update(fields(message, ""))
    for service in file.service:
        for method in service.method:
            shape[f"{service.name}/{method.name}"] = (method.input_type, method.output_type)
    return shape


def test_the_proto_matches_kserve_field_by_field(tmp_path):
    ours = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(ours)
    reference = _shape(_reference_descriptor(tmp_path))
    assert _shape(ours) == reference
    assert "GRPCInferenceService/ModelInfer" in reference


def test_the_modules_load_beside_tritonclients_own_definitions():
    # Both define inference.ModelInferRequest; ours lives in a descriptor pool of its own.
    request = pb.ModelInferRequest(model_name="iris", raw_input_contents=[b"\x00" * 4])
    request.inputs.add(name="input", datatype="FP32", shape=[1, 1])
    theirs = triton_pb2.ModelInferRequest.FromString(request.SerializeToString())
    assert theirs.model_name == "iris"
    assert list(theirs.inputs[0].shape) == [1, 1]
    assert pb.DESCRIPTOR.pool is not triton_pb2.DESCRIPTOR.pool
