"""GET /models/{name}/drift, the drift gauges, the status page's drift and the warning on a
change of state, in process over a store with a profiled regressor and the demo's iris."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import pytest
from conftest import DEMO_STORE, serve_store
from drift_support import NUMERIC, export_regressor, frame
from live_server import check_problem

WINDOW = 100
CHECK_S = 0.05


def wait_closed(client, count: int) -> dict:
    deadline = time.monotonic() + 10
    while True:
        (usage,) = client.get("/models/usage/drift").json()["versions"]
        if usage["windows_closed"] >= count:
            return usage
        assert time.monotonic() < deadline, usage
        time.sleep(CHECK_S)


def post(client, data) -> None:
    body = {"model": "usage", "instances": data[NUMERIC].to_numpy().tolist()}
    assert client.post("/predict/batch", json=body).status_code == 200


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    export_regressor(root, frame(2000, seed=1))
    shutil.copytree(DEMO_STORE / "iris", root / "iris")
    return root


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_drift_is_reported_where_people_look(store: Path) -> None:
    options = {"drift_window_rows": WINDOW, "drift_check_s": CHECK_S, "default_model": "usage"}
    collected = Collected()
    with serve_store(store, **options) as client:
        logging.getLogger("app.drift").addHandler(collected)  # after the lifespan set logging up
        (usage,) = client.get("/models/usage/drift").json()["versions"]
        assert usage["state"] == "waiting" and usage["windows_closed"] == 0
        iris = client.get("/models/iris/drift").json()
        assert [v["state"] for v in iris["versions"]] == ["unprofiled"] * len(iris["versions"])
        check_problem(client.get("/models/nope/drift"), 404)

        post(client, frame(WINDOW, seed=2))
        usage = wait_closed(client, 1)
        assert usage["state"] == "ok" and usage["last_window"]["rows"] == WINDOW
        post(client, frame(WINDOW, seed=3, load_shift_sd=2.0))
        usage = wait_closed(client, 2)
        window = usage["last_window"]
        assert usage["state"] == "drift" and window["features_over_threshold"] == ["load"]
        load = next(f for f in window["features"] if f["name"] == "load")
        assert load["psi"] > load["threshold"] and load["moved"]
        assert window["answers"]["psi"] > 0
        assert [w["window"] for w in usage["recent_windows"]] == [1, 2]

        metrics = client.get("/metrics").text
        assert 'model_server_drift_features{model="usage",version="1"} 1.0' in metrics
        line = next(
            ln for ln in metrics.splitlines()
            if ln.startswith('model_server_feature_drift{feature="load",model="usage"')
        )  # fmt: skip
        assert float(line.rsplit(" ", 1)[1]) == pytest.approx(load["psi"])
        assert 'model_server_drift_out_of_range_share{feature="load"' in metrics

        status = client.get("/ui/status").json()
        (model,) = [m for m in status["models"] if m["name"] == "usage"]
        drift = model["versions"][0]["drift"]
        assert drift["state"] == "drift" and [f["name"] for f in drift["moved"]] == ["load"]
    logging.getLogger("app.drift").removeHandler(collected)
    changes = [m for m in collected.messages if "drift state" in m]
    assert changes == [
        "model usage version 1: drift state ok -> drift in window 2 (features over threshold: load)"
    ]


def test_a_version_without_a_profile_adds_nothing_to_count(store: Path) -> None:
    with serve_store(store, default_model="iris") as client:
        body = {"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]}
        assert client.post("/predict", json=body).status_code == 200
        metrics = client.get("/metrics").text
        assert "model_server_feature_drift{" not in metrics


def test_a_rollouts_candidate_is_profiled_like_any_version(tmp_path: Path, store: Path) -> None:
    root = tmp_path / "store"
    shutil.copytree(store / "usage" / "1", root / "usage" / "1")
    shutil.copytree(store / "usage" / "1", root / "usage" / "2")
    (root / "usage" / "model.toml").write_text(
        "version_policy = 'latest:2'\n[rollout]\ncandidate = 2\ntraffic_percent = 100\n"
    )
    options = {"drift_window_rows": WINDOW, "drift_check_s": CHECK_S, "default_model": "usage"}
    with serve_store(root, **options) as client:
        post(client, frame(WINDOW, seed=6))  # names no version: the candidate answers
        deadline = time.monotonic() + 10
        while True:
            versions = {
                v["version"]: v for v in client.get("/models/usage/drift").json()["versions"]
            }
            if versions[2]["windows_closed"] >= 1:
                break
            assert time.monotonic() < deadline, versions
            time.sleep(CHECK_S)
        assert versions[2]["last_window"]["rows"] == WINDOW
        assert versions[1]["windows_closed"] == 0 and versions[1]["state"] == "waiting"
