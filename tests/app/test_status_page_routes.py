"""GET /ui, its assets, and GET /ui/status: what the status page is served and reads."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from importlib import resources

import pytest
from live_server import REPO, copy_demo_store, server_environ

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
ROLLOUT_KEYS = {
    "state", "candidate", "traffic_percent", "shadow_percent", "agreement", "agreement_ci95",
    "halt_reason", "last_promotion", "rollback_restores",
}  # fmt: skip


def status(client) -> dict:
    response = client.get("/ui/status")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    return response.json()


def test_page_and_assets_are_served_with_a_policy_that_allows_only_the_server(client):
    page = client.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    for name, kind in [("ui.css", "text/css"), ("ui.js", "text/javascript")]:
        asset = client.get(f"/ui/assets/{name}")
        assert asset.status_code == 200
        assert asset.headers["content-type"].startswith(kind)
    assert client.get("/ui/assets/missing.js").status_code == 404


def test_shipped_files_name_nothing_outside_the_server():
    # No CDN, font or image from elsewhere: the page must work on an air-gapped cluster. The SVG
    # namespace is an identifier that browsers never fetch.
    for item in resources.files("app").joinpath("ui").iterdir():
        text = item.read_text().replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"https?://|//[a-z0-9-]+\.[a-z]", text), item.name


def test_status_lists_each_version_as_models_does(client):
    listed = client.get("/models").json()["models"]
    shown = status(client)

    assert [m["name"] for m in shown["models"]] == [m["name"] for m in listed]
    for model, entry in zip(shown["models"], listed, strict=True):
        assert model["default_version"] == entry["default_version"]
        assert model["error"] == entry["error"]
        for version, source in zip(model["versions"], entry["versions"], strict=True):
            assert {k: version[k] for k in source} == source
            assert version["samples_checked"] > 0  # every demo version ships a samples.json
            assert version["default"] == (version["version"] == entry["default_version"])
        assert set(model["rollout"]) == ROLLOUT_KEYS
        assert model["rollout"]["state"] == "none"  # until rollouts exist (issue 13)
    assert shown["window_s"] == 60
    assert shown["workers"]["configured"] == 1


def test_traffic_of_the_last_minute_counts_each_versions_answers(serve, demo_store):
    with serve(demo_store) as client:
        for _ in range(7):
            assert client.post("/predict", json={"model": "iris", "features": IRIS_ROW}).is_success
        for _ in range(2):
            answer = client.post(
                "/predict", json={"model": "iris", "version": 1, "features": IRIS_ROW}
            )
            assert answer.is_success
        assert client.post("/predict", json={"model": "iris", "features": [1.0]}).status_code == 422
        client.get("/metrics")  # flushes the tallies now rather than within the second

        versions = {
            v["version"]: v for m in status(client)["models"] if m["name"] == "iris"
            for v in m["versions"]
        }  # fmt: skip

    default = next(v for v in versions.values() if v["default"])["traffic"]
    assert default["requests"] == 7
    assert default["rate_per_s"] == pytest.approx(7 / 60, abs=1e-3)
    assert 0 < default["p50_ms"] <= default["p99_ms"]
    assert sum(step["requests"] for step in default["series"]) == 7
    assert len(default["series"]) == 12
    assert versions[1]["traffic"]["requests"] == 2
    # A 422 is answered before a version is chosen: it belongs to no version's row.
    assert versions[1]["traffic"]["errors"] == 0


def test_ui_enabled_false_turns_the_page_off(serve, demo_store):
    with serve(demo_store, ui_enabled=False) as client:
        statuses = {path: client.get(path).status_code for path in ("/ui", "/ui/status")}
        metrics_answer = client.get("/metrics")

    assert statuses == {"/ui": 404, "/ui/status": 404}
    assert metrics_answer.status_code == 200


def test_the_window_forgets_traffic_older_than_a_minute(serve, demo_store, monkeypatch):
    with serve(demo_store) as client:
        assert client.post("/predict", json={"model": "iris", "features": IRIS_ROW}).is_success
        client.get("/metrics")
        later = time.time() + 61
        monkeypatch.setattr(client.app.runtime.recent_traffic, "_clock", lambda: later)
        shown = status(client)

    iris = next(m for m in shown["models"] if m["name"] == "iris")
    assert all(v["traffic"] is None for v in iris["versions"])


def test_status_and_rollout_report_show_the_last_promotion(serve, tmp_path):
    store = copy_demo_store(tmp_path / "store")
    (store / "iris" / "model.toml").write_text(
        "default_version = 2\n[promotion]\nversion = 2\nprevious = 1\nat = 2026-12-03T08:00:00Z\n"
    )
    with serve(store) as client:
        (model,) = [m for m in status(client)["models"] if m["name"] == "iris"]
        report = client.get("/models/iris/rollout").json()
    promotion = {
        "version": 2,
        "previous": 1,
        "at": "2026-12-03T08:00:00+00:00",
        "previous_state": "AVAILABLE",
    }
    assert model["rollout"]["last_promotion"] == report["last_promotion"] == promotion
    assert model["rollout"]["rollback_restores"] == report["rollback_restores"] == 1
    assert report["state"] == "none"


UI_FILES_READ = """
import sys
from pathlib import Path
from app.config import Settings
from app.main import create_app
from app.routes import ui

def read() -> int:
    return ui._assets.cache_info().currsize

store = Path(sys.argv[1])
after_import = read()
create_app(Settings(_env_file=None, model_store=store, ui_enabled=False))
without_ui = read()
create_app(Settings(_env_file=None, model_store=store, ui_enabled=True))
print(after_import, without_ui, read())
"""


def test_page_files_are_read_only_when_the_page_is_installed(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", UI_FILES_READ, str(tmp_path)],
        cwd=REPO,
        env=server_environ(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "0", "1"]
