"""Suite-wide: process, deployment, fuzzing, browser and load-test tests carry the `slow` marker,
by folder, so that `pytest -m "not slow"` is the inner loop and a new test there is marked
without anyone asking. Elsewhere, a test that starts a real server is marked by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

SLOW_FOLDERS = frozenset({"process", "deploy", "fuzz", "browser", "benchmarks"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(item.path).parent.name in SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)
