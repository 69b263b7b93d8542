"""Headless Chromium, driven by Selenium, against the real server process: settings and the
page helper shared by the browser tests (their fixtures are in conftest.py).

The browser is Debian's `chromium` with its `chromium-driver` (.ci/run installs both when they
are missing); Selenium is given both paths, so Selenium Manager downloads nothing. Without them
every browser test errors with the command that installs them: never a silent pass or skip.

Screenshots are kept under test-artifacts/browser/ in the repo (git ignores it; BROWSER_ARTIFACTS
moves it), and their paths are printed.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from live_server import REPO
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
INSTALL_HINT = (
    "the browser tests need Chromium and its driver from Debian: run "
    "`apt-get update && apt-get install -y chromium chromium-driver` as root (.ci/run does), "
    "or set CHROMIUM and CHROMEDRIVER to a Chromium and its matching chromedriver"
)
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS", REPO / "test-artifacts" / "browser"))
WAIT_S = 20.0
LAPTOP = (1280, 800)
PHONE = (390, 844)
POLL_INTERVAL_S = 1.0


class Page:
    """One browser tab on one server, remembering every console message and request it saw."""

    def __init__(self, driver: WebDriver, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url
        self.console: list[dict[str, Any]] = []
        self.requests: list[str] = []

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def until(self, check: Callable[[WebDriver], Any], what: str, timeout_s: float = WAIT_S) -> Any:
        """Wait for `check` to return something truthy; fail naming `what`."""
        return WebDriverWait(self.driver, timeout_s, poll_frequency=0.1).until(
            check, message=f"{what}: not seen within {timeout_s} s"
        )

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def viewport(self, width: int, height: int) -> None:
        """A viewport of exactly `width` CSS pixels (a phone's, below 500)."""
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500},
        )

    def screenshot(self, name: str, width: int) -> Path:
        """The whole page at `width` CSS pixels, kept as a test artifact; its path is printed."""
        self.viewport(width, 600)
        height = int(self.js("return document.documentElement.scrollHeight"))
        self.viewport(width, height)
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}-{width}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        print(f"screenshot: {path}")
        return path

    def collect_logs(self) -> None:
        self.console += self.driver.get_log("browser")
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])

    def console_errors(self) -> list[str]:
        self.collect_logs()
        return [entry["message"] for entry in self.console if entry["level"] == "SEVERE"]

    def outside_requests(self) -> list[str]:
        """Every request the page made anywhere but its own server (data: URLs are inline)."""
        self.collect_logs()
        own = self.base_url + "/"
        return [url for url in self.requests if not url.startswith((own, "data:", "blob:"))]
