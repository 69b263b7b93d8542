"""Fixtures of the browser tests: Chromium (or an error that says how to install it), a driver
per test, one live server for the session, and a page that must stay clean (browser_support)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import CHROMEDRIVER, CHROMIUM, INSTALL_HINT, LAPTOP, POLL_INTERVAL_S, Page
from live_server import LiveServer, copy_demo_store, start_server
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver


@pytest.fixture(scope="session")
def chromium() -> tuple[Path, Path]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: {INSTALL_HINT}", pytrace=False)
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture
def driver(chromium: tuple[Path, Path]) -> Iterator[WebDriver]:
    binary, chromedriver = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = str(binary)
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-extensions",
        f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(executable_path=str(chromedriver)))
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server over a copy of the demo store, rescanning it every POLL_INTERVAL_S (tests
    that change the store add versions of their own to it)."""
    root = tmp_path_factory.mktemp("browser")
    store = copy_demo_store(root / "store")
    with start_server(store, root, env={"POLL_INTERVAL_S": str(POLL_INTERVAL_S)}) as live:
        yield live


@pytest.fixture
def page(driver: WebDriver, server: LiveServer) -> Iterator[Page]:
    """A tab on the server; after the test it must have logged no error to the console and
    asked nothing of any other host."""
    page = Page(driver, server.url)
    yield page
    assert page.console_errors() == []
    assert page.outside_requests() == []
