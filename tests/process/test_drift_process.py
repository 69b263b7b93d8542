"""Drift through a real `python -m app`: the served PSI is numpy's on the same rows and
profile, one worker and four agree on the same replay, rows like the reference rarely cross a
threshold, and a shift of half a standard deviation in one feature is caught within two windows
while the other features stay quiet."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from drift_support import NUMERIC, export_classifier, export_regressor, frame
from live_server import LiveServer, start_server, wait_until

WINDOW = 200
CHECK_S = 0.2
WAIT_S = 30.0
MODELS = {"usage": NUMERIC, "churn": [*NUMERIC, "city"]}
ENV = {
    "DRIFT_WINDOW_ROWS": str(WINDOW),
    "DRIFT_CHECK_S": str(CHECK_S),
    "DRIFT_WINDOW_S": "3600",
    "LOG_LEVEL": "warning",
    "ACCESS_LOG": "false",
}
TRIALS = 20


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("drift-store")
    reference = frame(10_000, seed=1)
    export_regressor(root, reference)
    export_classifier(root, reference)
    return root


@pytest.fixture(scope="module")
def server(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with start_server(store, tmp_path_factory.mktemp("log"), env=ENV) as live:
        yield live


def rows_for(model: str, data: pd.DataFrame) -> list[Any]:
    columns = MODELS[model]
    if model == "usage":
        return data[columns].to_numpy().tolist()
    return data[columns].to_dict(orient="records")


def send(server: LiveServer, model: str, data: pd.DataFrame, batch: int = WINDOW) -> list[Any]:
    """Post `data` in batches, each on a connection of its own; the answers, in order."""

    def post(start: int) -> list[Any]:
        body = {"model": model, "instances": rows_for(model, data.iloc[start : start + batch])}
        answer = httpx.post(server.url + "/predict/batch", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()["predictions"]

    with ThreadPoolExecutor(4) as pool:
        parts = list(pool.map(post, range(0, len(data), batch)))
    return [p for part in parts for p in part]


def drift(server: LiveServer, model: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/models/{model}/drift", timeout=10)
    assert answer.status_code == 200, answer.text
    (version,) = answer.json()["versions"]
    return version


def wait_windows(server: LiveServer, model: str, count: int) -> dict[str, Any]:
    """The model's drift once `count` windows have closed (never more)."""
    seen: dict[str, Any] = {}

    def closed() -> bool:
        seen.update(drift(server, model))
        return seen["windows_closed"] >= count

    wait_until(closed, f"{model}: window {count} closed", WAIT_S, server=server)
    assert seen["windows_closed"] == count, seen
    return seen


def plain_bins(entry: dict, values: np.ndarray) -> np.ndarray:
    if entry["kind"] == "numeric":
        return np.digitize(values.astype(float), entry["edges"])
    position = {v: i for i, v in enumerate(entry["values"])}
    return np.array([position.get(v, len(entry["values"])) for v in values.tolist()])


def plain_psi(entry: dict, rows: int, values: np.ndarray) -> float:
    k = len(entry["shares"])
    counts = np.bincount(plain_bins(entry, values), minlength=k)
    p = (np.asarray(entry["shares"]) * rows + 0.5) / (rows + 0.5 * k)
    q = (counts + 0.5) / (counts.sum() + 0.5 * k)
    return float(np.sum((q - p) * np.log(q / p)))


def test_served_psi_is_numpys_on_the_same_rows_and_profile(server: LiveServer, store: Path) -> None:
    data = frame(WINDOW, seed=2)
    for model in MODELS:
        start = drift(server, model)["windows_closed"]
        predictions = send(server, model, data, batch=50)
        window = wait_windows(server, model, start + 1)["last_window"]
        assert window["rows"] == WINDOW
        profile = json.loads((store / model / "1" / "profile.json").read_text())
        served = {f["name"]: f["psi"] for f in window["features"]}
        for entry in profile["features"]:
            values = data[entry["name"]].to_numpy()
            if entry["kind"] == "numeric":
                values = values.astype(np.float32)  # what the model takes
            assert served[entry["name"]] == pytest.approx(
                plain_psi(entry, profile["rows"], values), abs=1e-9
            ), (model, entry["name"])
        answers = np.asarray(predictions, dtype=object if model == "churn" else np.float32)
        expected = plain_psi(profile["answers"], profile["rows"], answers)
        assert window["answers"]["psi"] == pytest.approx(expected, abs=1e-9)


def test_rows_like_the_reference_rarely_cross_a_threshold(server: LiveServer) -> None:
    over = total = 0
    for chunk in range(4):
        data = frame(10 * WINDOW, seed=30 + chunk)
        for model in MODELS:
            start = drift(server, model)["windows_closed"]
            send(server, model, data)
            windows = wait_windows(server, model, start + 10)["recent_windows"]
            assert [w["rows"] for w in windows] == [WINDOW] * 10
            over += sum(len(w["features_over_threshold"]) for w in windows)
            total += 10 * len(MODELS[model])
    assert total == 360
    assert over <= 0.01 * total, f"{over} of {total} feature-windows over threshold"


def test_half_a_deviation_in_one_feature_is_caught_within_two_windows(
    server: LiveServer,
) -> None:
    caught = trials = untouched_over = untouched = 0
    for seed in range(100, 100 + TRIALS):
        data = frame(2 * WINDOW, seed=seed, load_shift_sd=0.5)
        for model in MODELS:
            start = drift(server, model)["windows_closed"]
            send(server, model, data)
            windows = wait_windows(server, model, start + 2)["recent_windows"][-2:]
            flagged = [set(w["features_over_threshold"]) for w in windows]
            trials += 1
            caught += any("load" in f for f in flagged)
            untouched_over += sum(len(f - {"load"}) for f in flagged)
            untouched += 2 * (len(MODELS[model]) - 1)
    assert caught >= 0.95 * trials, f"caught in {caught} of {trials} trials"
    assert untouched_over <= 0.01 * untouched, f"{untouched_over} of {untouched} moved"
    logged = "drift state ok -> drift" in server.output() or "none -> drift" in server.output()
    assert logged, "no warning when the state changed"


def replay(server: LiveServer) -> list[dict[str, Any]]:
    """Three windows of the same rows, each sent in batches over separate connections and
    awaited before the next; the windows as the server judged them."""
    windows = []
    for index in range(3):
        data = frame(WINDOW, seed=50 + index, load_shift_sd=0.3 * index)
        for model in MODELS:
            send(server, model, data, batch=25)
            window = wait_windows(server, model, index + 1)["last_window"]
            windows.append({k: window[k] for k in ("rows", "state", "features", "answers")})
    return windows


def test_one_worker_and_four_judge_a_replay_alike(store: Path, tmp_path: Path) -> None:
    for folder in ("one", "four"):
        (tmp_path / folder).mkdir()
    with start_server(store, tmp_path / "one", env=ENV) as one:
        alone = replay(one)
    env = {**ENV, "WORKERS": "4", "TMPDIR": str(tmp_path), "LOG_LEVEL": "info"}
    with start_server(store, tmp_path / "four", env=env, start_timeout_s=90) as four:
        wait_until(
            lambda: four.output().count("version 1 loaded") >= 4 * len(MODELS),
            "four workers loaded both models",
            90,
            server=four,
        )
        together = replay(four)
        pids = {path.name for path in Path(tmp_path).glob("*/drift-counts-*.json")}
    assert len(pids) == 4, pids
    assert together == alone
