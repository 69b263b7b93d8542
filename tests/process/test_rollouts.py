"""Rollouts against the real process (CONTRACT section 6): one sticky key on one version across
two workers and a restart, the report and its metrics, and promotion and rollback by editing
model.toml under 8 threads of load with no failed request."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from live_server import LiveServer, wait_until
from onnx_factories import iris_rows, write_classifier, write_model_toml
from prometheus_client.parser import text_string_to_metric_families

from ml.rollout import bucket

TOKEN = "rollout-test-token"
ROWS = iris_rows(150)
STICKY = "[rollout]\ncandidate = 2\ntraffic_percent = 40\nsticky_header = 'X-Routing-Key'\n"


def make_store(root: Path, toml: str) -> Path:
    store = root / "store"
    write_classifier(store / "iris" / "1", "forest", (0, 1, 2))
    write_classifier(store / "iris" / "2", "logistic", (0, 1, 2))
    write_model_toml(store / "iris", toml)
    return store


def write_toml(store: Path, text: str) -> None:
    staged = store / "iris" / ".model.toml.tmp"
    staged.write_text(text)
    os.replace(staged, store / "iris" / "model.toml")


def reload(server: LiveServer) -> None:
    answer = httpx.post(server.url + "/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text


def version_for(server: LiveServer, key: str) -> int:
    # A new connection per call: with two workers, either may answer.
    response = httpx.post(
        server.url + "/predict",
        json={"model": "iris", "features": ROWS[0]},
        headers={"X-Routing-Key": key},
    )
    assert response.status_code == 200, response.text
    return int(response.json()["version"])


def every_worker_ready(server: LiveServer) -> Callable[[], bool]:
    """Each worker loads the store on its own: ready once 20 new connections in a row (either
    worker may take each) find it ready."""
    streak = [0]

    def check() -> bool:
        ok = httpx.get(server.url + "/health/ready").status_code == 200
        streak[0] = streak[0] + 1 if ok else 0
        return streak[0] >= 20

    return check


def metric(server: LiveServer, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = httpx.get(server.url + "/metrics").text
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_one_sticky_key_gets_one_version_across_workers_and_restarts(tmp_path: Path) -> None:
    store = make_store(tmp_path, STICKY)
    keys = [f"customer-{i}" for i in range(40)]
    expected = {key: 2 if bucket("iris", key) < 40 else 1 for key in keys}
    assert set(expected.values()) == {1, 2}
    for _ in range(2):  # a restart changes nothing
        with LiveServer.start(store, tmp_path, env={"WORKERS": "2"}) as server:
            wait_until(every_worker_ready(server), "both workers ready", 30, server=server)
            for _ in range(3):
                assert {key: version_for(server, key) for key in keys} == expected


def test_report_and_metrics(tmp_path: Path) -> None:
    store = make_store(
        tmp_path,
        STICKY.replace("traffic_percent = 40", "traffic_percent = 50") + "shadow_percent = 100\n",
    )
    with LiveServer.start(store, tmp_path) as server:
        versions = Counter(version_for(server, f"k{i}") for i in range(60))
        url = server.url + "/models/iris/rollout"
        wait_until(
            lambda: httpx.get(url).json()["shadow"]["compared"] >= versions[1],
            "shadow rows compared",
            10,
            server=server,
        )
        report = httpx.get(url).json()
        assert (
            report["model"],
            report["state"],
            report["default_version"],
            report["candidate"],
        ) == ("iris", "active", 1, 2)
        assert report["answered"] == {str(v): n for v, n in sorted(versions.items())}
        assert report["shadow"]["compared"] == versions[1]  # each row the default answered
        assert set(report["latency_ms"]) == {"1", "2"}
        requests = metric(server, "model_server_rollout_requests_total")
        assert requests == {
            (("model", "iris"), ("version", str(v))): float(n) for v, n in versions.items()
        }
        comparisons = metric(server, "model_server_shadow_comparisons_total")
        assert sum(comparisons.values()) == versions[1]
        assert {dict(k)["outcome"] for k in comparisons} <= {"agreed", "disagreed"}
        assert httpx.get(server.url + "/models/nope/rollout").status_code == 404
        none = httpx.get(server.url + "/models/iris/rollout")
        assert none.status_code == 200


def test_a_bad_rollout_shows_in_get_models(tmp_path: Path) -> None:
    store = make_store(tmp_path, "default_version = 2\n[rollout]\ncandidate = 2\n")
    # A model whose model.toml was never good serves nothing until it is fixed.
    with LiveServer.start(store, tmp_path, wait_ready=False) as server:
        wait_until(
            lambda: bool(httpx.get(server.url + "/models").json()["models"]),
            "the first scan",
            10,
            server=server,
        )
        (model,) = httpx.get(server.url + "/models").json()["models"]
        assert "rollout.candidate 2 is the default_version" in model["error"]
        assert httpx.get(server.url + "/models/iris/rollout").json()["state"] == "none"


def test_promotion_and_rollback_under_load_fail_no_request(tmp_path: Path) -> None:
    store = make_store(tmp_path, "[rollout]\ncandidate = 2\ntraffic_percent = 10\n")
    with LiveServer.start(store, tmp_path, env={"ADMIN_TOKEN": TOKEN}) as server:
        stop = threading.Event()
        statuses: Counter[int] = Counter()
        seen: list[set[int]] = [set() for _ in range(3)]
        phase = [0]

        def load() -> None:
            with httpx.Client(base_url=server.url) as client:
                while not stop.is_set():
                    answer = client.post("/predict", json={"model": "iris", "features": ROWS[7]})
                    statuses[answer.status_code] += 1
                    if answer.status_code == 200:
                        seen[phase[0]].add(answer.json()["version"])

        with ThreadPoolExecutor(8) as pool:
            for _ in range(8):
                pool.submit(load)
            time.sleep(1.5)
            phase[0] = 1
            write_toml(server.store, "default_version = 2\n")  # promote: pin 2, no rollout
            reload(server)
            time.sleep(1.5)
            phase[0] = 2
            write_toml(server.store, "default_version = 1\n")  # roll back
            reload(server)
            time.sleep(1.5)
            stop.set()
        assert set(statuses) == {200}, statuses
        assert seen[0] == {1, 2}
        assert 2 in seen[1] and 1 in seen[2]
        assert httpx.get(server.url + "/models/iris/rollout").json()["state"] == "none"


def test_v2_infer_follows_the_split_unless_it_names_a_version(tmp_path: Path) -> None:
    store = make_store(tmp_path, "[rollout]\ncandidate = 2\ntraffic_percent = 100\n")
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ROWS[0]}]}
    with LiveServer.start(store, tmp_path) as server:
        unnamed = httpx.post(server.url + "/v2/models/iris/infer", json=body)
        assert unnamed.status_code == 200, unnamed.text
        assert unnamed.json()["model_version"] == "2"
        named = httpx.post(server.url + "/v2/models/iris/versions/1/infer", json=body)
        assert named.json()["model_version"] == "1"
        assert httpx.get(server.url + "/models/iris/rollout").json()["answered"] == {"2": 1}
