"""GET /ui in headless Chromium, against the real server over a copy of the demo store."""

from __future__ import annotations

import json
import shutil
from typing import Any

import httpx
from browser_support import LAPTOP, PHONE, POLL_INTERVAL_S, Page
from live_server import LiveServer
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

REFRESH_S = 0.5  # the page's own polling, set by ?refresh= (2 s by default)
# Loading and warming up a small model, on a shared two-core machine.
LOAD_ALLOWANCE_S = 10.0
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


def models(server: LiveServer) -> list[dict[str, Any]]:
    return httpx.get(server.url + "/models", timeout=5.0).json()["models"]


# The page redraws itself every REFRESH_S: each read is one script, so that it never holds an
# element that the next redraw replaces.
def cell(page: Page, row_id: str, column: str) -> str | None:
    """The text of one cell of a version's row, by its column's label; None without that row."""
    return page.js(
        "const cell = document.getElementById(arguments[0])"
        "?.querySelector(`[data-label='${arguments[1]}']`);"
        "return cell ? cell.textContent : null",
        row_id,
        column,
    )


def fact(page: Page, model: str, name: str) -> str | None:
    """The value of one of a model's facts (default version, rollout...), by its name."""
    return page.js(
        "const section = `section[aria-labelledby='model-${arguments[0]}']`;"
        "const terms = document.querySelectorAll(`${section} dt`);"
        "const term = [...terms].find((t) => t.textContent === arguments[1]);"
        "return term ? term.nextElementSibling.textContent : null",
        model,
        name,
    )


def attribute(page: Page, selector: str, name: str) -> str | None:
    return page.js(
        "return document.querySelector(arguments[0])?.getAttribute(arguments[1]) ?? null",
        selector,
        name,
    )


def open_status_page(page: Page) -> None:
    page.open(f"/ui?refresh={REFRESH_S}")
    page.until(lambda d: d.find_elements(By.CSS_SELECTOR, "section.model"), "the models")


def test_lists_every_model_and_version_as_the_api_does(page: Page, server: LiveServer) -> None:
    for _ in range(20):
        answer = httpx.post(server.url + "/predict", json={"model": "iris", "features": IRIS_ROW})
        assert answer.status_code == 200
    open_status_page(page)

    listed = models(server)
    assert {"iris", "diabetes", "diabetes_pipeline"} <= {m["name"] for m in listed}
    headings = page.js("return [...document.querySelectorAll('.model h2')].map(h => h.textContent)")
    assert headings == [m["name"] for m in listed]
    for model in listed:
        for version in model["versions"]:
            row_id = f"{model['name']}-v{version['version']}"
            assert cell(page, row_id, "State") == version["state"]
            role = "default" if version["version"] == model["default_version"] else "—"
            assert cell(page, row_id, "Role") == role
            # A dash for a version that never loaded (no count), else the rows checked.
            samples = version.get("samples_checked")
            shown = "—" if samples is None else str(samples)
            assert cell(page, row_id, "Samples checked") == shown
        # Rollouts come with issue 13: until then every model's is in state "none".
        assert fact(page, model["name"], "Rollout") == "none"
        default = model["default_version"]
        assert fact(page, model["name"], "Default version") == f"v{default}"

    # The requests above show up as the default version's traffic, with a drawn chart.
    iris = next(m for m in listed if m["name"] == "iris")
    row_id = f"iris-v{iris['default_version']}"
    page.until(lambda d: cell(page, row_id, "Requests/s") not in ("—", "0.00"), "iris's traffic")
    page.driver.find_element(By.ID, "pause").click()  # hold still for the checks and pictures
    p50, p99 = float(cell(page, row_id, "p50 ms")), float(cell(page, row_id, "p99 ms"))
    assert 0 < p50 <= p99
    assert attribute(page, f"#{row_id} svg.chart path.p50", "d")
    label = attribute(page, f"#{row_id} svg.chart", "aria-label")
    assert label.startswith(f"iris version {iris['default_version']}: p50 ")
    assert " ms, p99 " in label

    page.screenshot("status-page", LAPTOP[0])
    page.screenshot("status-page", PHONE[0])
    # At phone width each version is a card of labelled cells: nothing scrolls sideways.
    page.viewport(*PHONE)
    assert page.js("return document.documentElement.scrollWidth") <= PHONE[0]
    assert page.js("return getComputedStyle(document.querySelector('tbody tr')).display") == "grid"


def test_a_new_version_appears_without_a_reload(page: Page, server: LiveServer) -> None:
    open_status_page(page)
    page.js("window.sameDocument = true")
    iris = server.store / "iris"
    staging = iris / ".tmp-3"
    shutil.copytree(iris / "2", staging)
    # Rows checked before v3 serves: v2's own answers, which the same graph must repeat.
    rows = [IRIS_ROW, [6.7, 3.0, 5.2, 2.3]]
    batch = {"model": "iris", "version": 2, "instances": rows}
    answer = httpx.post(server.url + "/predict/batch", json=batch, timeout=5.0).json()
    expected = {k: v for k, v in answer.items() if k not in ("model", "version")}
    samples = {"instances": rows, "expected": expected}
    (staging / "samples.json").write_text(json.dumps(samples))
    staging.rename(iris / "3")  # as a data scientist ships a version: one atomic rename

    # Two polls of the store (the second sees the files settled and loads them), then the page.
    within = 2 * POLL_INTERVAL_S + 2 * REFRESH_S + LOAD_ALLOWANCE_S
    page.until(
        lambda d: cell(page, "iris-v3", "State") == "AVAILABLE",
        "iris v3 AVAILABLE on the page",
        timeout_s=within,
    )
    assert page.js("return window.sameDocument === true"), "the page was reloaded"
    assert cell(page, "iris-v3", "Samples checked") == str(len(rows))


def test_a_failed_version_shows_its_reason(page: Page, server: LiveServer) -> None:
    broken = server.store / "diabetes" / ".tmp-7"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"not an onnx graph")
    broken.rename(server.store / "diabetes" / "7")
    open_status_page(page)

    page.until(
        lambda d: cell(page, "diabetes-v7", "State") == "FAILED",
        "diabetes v7 FAILED on the page",
        timeout_s=2 * POLL_INTERVAL_S + 2 * REFRESH_S + LOAD_ALLOWANCE_S,
    )
    diabetes = next(m for m in models(server) if m["name"] == "diabetes")
    (failed,) = [v for v in diabetes["versions"] if v["version"] == 7]
    assert failed["error"]
    reason = page.js("return document.querySelector('#diabetes-v7 + tr.error-row').textContent")
    assert reason == f"v7 error: {failed['error']}"
    assert cell(page, "diabetes-v7", "Samples checked") == "—"  # never loaded: nothing checked
    page.driver.find_element(By.ID, "pause").click()
    page.screenshot("status-page-failed", LAPTOP[0])


def test_keyboard_reaches_the_models_and_pauses_updates(page: Page) -> None:
    open_status_page(page)
    body = page.driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    assert page.js("return document.activeElement.className") == "skip"
    page.driver.switch_to.active_element.send_keys(Keys.ENTER)
    page.until(lambda d: page.js("return document.activeElement.id") == "models", "focus on main")

    page.js("document.activeElement.blur(); window.scrollTo(0, 0)")
    for _ in range(8):
        page.driver.switch_to.active_element.send_keys(Keys.TAB)
        if page.js("return document.activeElement.id") == "pause":
            break
    button = page.driver.switch_to.active_element
    assert button.get_attribute("id") == "pause", "the pause button is not reachable with Tab"
    button.send_keys(Keys.SPACE)
    assert button.get_attribute("aria-pressed") == "true"
    assert button.text == "Resume updates"


def test_tables_are_labelled_for_screen_readers(page: Page) -> None:
    open_status_page(page)
    tables = page.js(
        "return [...document.querySelectorAll('section.model table')].map((t) => ({"
        "caption: t.caption.textContent,"
        "columns: [...t.querySelectorAll('thead th[scope=col]')].map((h) => h.textContent),"
        "rowHeaders: t.querySelectorAll('tbody th[scope=row]').length}))"
    )
    assert tables
    for table in tables:
        assert table["caption"].startswith("Versions of ")
        assert table["columns"][:4] == ["Version", "State", "Role", "Samples checked"]
        assert table["rowHeaders"] >= 1
    assert attribute(page, "#updated", "aria-live") == "polite"


def test_a_rollout_shows_its_agreement(page: Page, server: LiveServer) -> None:
    toml = server.store / "iris" / "model.toml"
    original = toml.read_text()
    staged = toml.with_name(".model.toml.tmp")
    staged.write_text(original + "[rollout]\ncandidate = 1\nshadow_percent = 100\n")
    staged.rename(toml)
    rollout_url = server.url + "/models/iris/rollout"
    try:
        deadline = 2 * POLL_INTERVAL_S + LOAD_ALLOWANCE_S
        page.until(
            lambda d: httpx.get(rollout_url).json()["state"] == "active",
            "the rollout active",
            timeout_s=deadline,
        )
        for _ in range(40):  # the default answers; version 1 scores every row in its shadow
            answer = httpx.post(
                server.url + "/predict", json={"model": "iris", "features": IRIS_ROW}
            )
            assert answer.json()["version"] != 1
        page.until(
            lambda d: httpx.get(rollout_url).json()["shadow"]["compared"] == 40,
            "40 shadow rows compared",
            timeout_s=LOAD_ALLOWANCE_S,
        )
        shadow = httpx.get(rollout_url).json()["shadow"]
        low, high = shadow["agreement_ci95"]
        expected = (
            f"{100 * shadow['agreement']:.2f}% (95% CI {100 * low:.2f}%\u2013{100 * high:.2f}%)"
        )
        open_status_page(page)
        page.until(lambda d: fact(page, "iris", "Agreement") == expected, "the agreement shown")
        assert fact(page, "iris", "Rollout") == "active"
        assert fact(page, "iris", "Candidate") == "v1"
        assert fact(page, "iris", "Shadow") == "100%"
        page.driver.find_element(By.ID, "pause").click()
        page.screenshot("status-page-rollout", LAPTOP[0])
    finally:
        staged.write_text(original)
        staged.rename(toml)
