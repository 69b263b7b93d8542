"""`model-export`: the export tool's command; says which extra to install when it is missing."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run ml.export's command line, or explain that a server-only install lacks the extra."""
    try:
        from ml.export import main as export_main
    except ModuleNotFoundError as exc:
        print(
            f"model-export needs the export extra ({exc.name} is not installed): "
            "pip install 'onnx-model-server[export]'",
            file=sys.stderr,
        )
        return 2
    return export_main(argv)
