"""Regenerate the modules of `grpc_predict_v2.proto`: `python -m app.grpc.proto.regenerate`.

Needs grpcio-tools (the `dev` extra). The generated message module registers its file in a
descriptor pool of its own instead of protobuf's default one: tritonclient.grpc, KServe's
client and others register the same `inference.*` names in the default pool, and two files
defining one symbol there cannot be imported into one process. The wire format (message and
field numbers, the service's method paths) does not depend on the pool.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

PROTO = Path(__file__).with_name("grpc_predict_v2.proto")
PACKAGE_DIR = Path("app/grpc/proto")  # the import path of the generated modules, from the root
OUTPUTS = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py")
DEFAULT_POOL = "_descriptor_pool.Default().AddSerializedFile("
OWN_POOL = "_descriptor_pool.DescriptorPool().AddSerializedFile("


def generate(out_dir: Path) -> list[Path]:
    """Write the generated modules into `out_dir`; the paths written."""
    from grpc_tools import protoc  # dev-only: the server imports the generated modules

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / PACKAGE_DIR).mkdir(parents=True)
        shutil.copy(PROTO, root / PACKAGE_DIR / PROTO.name)
        include = str(Path(protoc.__file__).parent / "_proto")
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{root}",
                f"-I{include}",
                f"--python_out={root}",
                f"--pyi_out={root}",
                f"--grpc_python_out={root}",
                str(root / PACKAGE_DIR / PROTO.name),
            ]
        )
        if status != 0:
            raise SystemExit(f"protoc failed with status {status}")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in OUTPUTS:
            text = (root / PACKAGE_DIR / name).read_text(encoding="utf-8")
            if name.endswith("_pb2.py"):
                if DEFAULT_POOL not in text:
                    raise SystemExit(f"{name}: the descriptor pool line was not found")
                text = text.replace(DEFAULT_POOL, OWN_POOL)
            (out_dir / name).write_text(text, encoding="utf-8")
            written.append(out_dir / name)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=PROTO.parent, help="where to write (default: next to the proto)"
    )
    for path in generate(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
