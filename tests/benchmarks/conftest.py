"""A server shared by the load-test tests, over the store of loadtest_store.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from live_server import LiveServer, start_server
from loadtest_store import build_store


@pytest.fixture(scope="package")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("loadtest") / "store")


@pytest.fixture(scope="package")
def served(store: Path) -> Iterator[LiveServer]:
    with start_server(store, store.parent) as server:
        yield server
