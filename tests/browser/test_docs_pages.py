"""/docs and /redoc render in headless Chromium with nothing fetched from elsewhere (the machines
that run the tests reach no CDN, so a page that needed one would stay blank here too)."""

from __future__ import annotations

from browser_support import LAPTOP, Page
from selenium.webdriver.common.by import By


def test_swagger_ui_renders_every_operation(page: Page) -> None:
    page.open("/docs")

    title = page.until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title"), "Swagger UI's title"
    )
    assert title[0].text.startswith("ONNX model server")
    spec_paths = page.js("return fetch('/openapi.json').then((r) => r.json()).then((s) => s.paths)")
    operations = sum(len(methods) for methods in spec_paths.values())
    page.until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) == operations,
        f"all {operations} operations",
    )
    page.screenshot("docs", LAPTOP[0])


def test_redoc_renders_the_api(page: Page) -> None:
    page.open("/redoc")

    heading = page.until(lambda d: d.find_elements(By.CSS_SELECTOR, "h1"), "ReDoc's title")
    assert heading[0].text.startswith("ONNX model server")
    page.until(
        lambda d: d.find_elements(By.XPATH, "//h2[contains(., 'Predict')]"),
        "ReDoc's operations",
    )
