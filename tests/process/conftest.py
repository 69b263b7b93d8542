"""Shared set-up for the tests of the real process: makes tests/onnx_factories.py importable."""

from __future__ import annotations

import sys
from pathlib import Path

# tests/ has no __init__.py, so pytest puts only this folder on sys.path; the factories module
# one level up is shared with tests/ml and tests/app.
_TESTS = str(Path(__file__).resolve().parent.parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
