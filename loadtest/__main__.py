"""`model-loadtest` (and `python -m loadtest`): says which extra to install when it is missing."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load test's command line, or explain that an install lacks the bench extra."""
    try:
        from loadtest.cli import main as cli_main
    except ModuleNotFoundError as exc:
        print(
            f"model-loadtest needs the bench extra ({exc.name} is not installed): "
            "pip install 'onnx-model-server[bench]'",
            file=sys.stderr,
        )
        return 2
    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
