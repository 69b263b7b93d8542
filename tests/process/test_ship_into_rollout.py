"""Shipping a new version straight into a rollout, against the real process and the real
command-line tools, under 8 threads of load naming no version.

The store's model has no pinned default, so a version that appeared without its rollout would
become the default and answer everything. Answers are counted by version in 10 ms bins over the
whole operation: the new version's share, in every bin and every run of bins up to the whole,
stays within binomial bounds of its setting. Promotion then rollback fail no request, and the old
default answers again as soon as the watcher applies the rollback, without loading anything.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from live_server import REPO, LiveServer, wait_until
from onnx_factories import iris_rows, write_classifier
from scipy.stats import binom
from sklearn.datasets import load_iris
from sklearn.naive_bayes import GaussianNB

from ml.cli.rollout import main as rollout_main

POLL_S = 0.1
THREADS = 8
BIN_S = 0.01
# Runs of bins checked: one bin, one poll interval, half a second, everything.
RUNS = (1, 10, 50)
# The chance, over all the checks of one test, of failing a correct server.
ALPHA = 1e-4
ROW = iris_rows(150)[7]
PACE_S = 0.02


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """iris 1 and 2, no model.toml: version 2 is the default as the highest."""
    root = tmp_path / "store"
    write_classifier(root / "iris" / "1", "forest", (0, 1, 2))
    write_classifier(root / "iris" / "2", "logistic", (0, 1, 2))
    return root


@pytest.fixture
def fitted(tmp_path: Path) -> list[str]:
    """A naive Bayes classifier on iris, saved as model-export reads it: its arguments."""
    data = load_iris()
    model_file = tmp_path / "nb.joblib"
    joblib.dump(GaussianNB().fit(data.data, data.target), model_file)
    sample = tmp_path / "rows.csv"
    pd.DataFrame(data.data[::5], columns=[f"f{i}" for i in range(4)]).to_csv(sample, index=False)
    return [str(model_file), "--name", "iris", "--sample", str(sample)]


class Load:
    """Threads posting one row naming no version; every answer as (time, version or -status)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(THREADS)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            # Paced, so that the tools under test get some of a small machine's CPU.
            while not self._stop.wait(PACE_S):
                answer = client.post("/predict", json={"model": "iris", "features": ROW})
                ok = answer.status_code == 200
                self.answers.append(
                    (time.monotonic(), int(answer.json()["version"]) if ok else -answer.status_code)
                )

    def between(self, start: float, end: float) -> list[tuple[float, int]]:
        return [(t, v) for t, v in list(self.answers) if start <= t < end]

    @contextmanager
    def running(self) -> Iterator[Load]:
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(timeout=15)


def bins(answers: list[tuple[float, int]], start: float, version: int) -> np.ndarray:
    """Per 10 ms bin from `start`: [answers, answers by `version`]."""
    times = np.array([t for t, _ in answers])
    index = ((times - start) / BIN_S).astype(int)
    counts = np.zeros((index.max() + 1 if len(index) else 0, 2), dtype=int)
    np.add.at(counts[:, 0], index, 1)
    np.add.at(counts[:, 1], index, [v == version for _, v in answers])
    return counts


def assert_share_within(counts: np.ndarray, percent: float) -> None:
    """No bin, and no run of RUNS bins, gives `version` more than a share of `percent` can."""
    windows = [(1, counts)] + [
        (size, np.lib.stride_tricks.sliding_window_view(counts, size, axis=0).sum(axis=2))
        for size in (*RUNS[1:], len(counts))
        if size <= len(counts)
    ]
    tests = sum(len(w) for _, w in windows)
    p = percent / 100
    for size, window in windows:
        for total, new in window:
            if p == 0:
                assert new == 0, f"{new} of {total} answers by the new version at 0%"
            elif new > 0:
                tail = binom.sf(new - 1, total, p)  # P(X >= new)
                assert tail * tests >= ALPHA, (
                    f"{new} of {total} answers in {size} bins by the new version at {percent}%"
                )


def run_tool(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """An installed command, as `python -c` on this checkout's code."""
    code = f"import sys; from {module} import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def export(store: Path, fitted: list[str], version: int, *options: str) -> None:
    done = run_tool("ml.cli.export", *fitted, "--store", str(store), *options)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(store / "iris" / str(version))


def rollout_report(server: LiveServer) -> dict:
    return httpx.get(server.url + "/models/iris/rollout").json()


def active_with(server: LiveServer, candidate: int) -> bool:
    report = rollout_report(server)
    return report["state"] == "active" and report["candidate"] == candidate


def test_ship_into_rollouts_promote_and_roll_back_under_load(
    store: Path, fitted: list[str], tmp_path: Path
) -> None:
    env = {"POLL_INTERVAL_S": str(POLL_S), "ACCESS_LOG": "false"}
    with LiveServer.start(store, tmp_path, env=env) as server, Load(server.url).running() as load:
        # Refused before anything is written: a halt that could never act.
        refused = run_tool(
            "ml.cli.rollout", "--store", str(store), "start", "iris", "3", "--traffic", "50",
            "--min-agreement", "0.95",
        )  # fmt: skip
        assert refused.returncode == 1
        assert "min_agreement needs shadow_percent above 0" in refused.stderr
        assert not (store / "iris" / "model.toml").exists()

        # Version 3 at 0%, scored in the shadow only.
        began = time.monotonic()
        export(store, fitted, 3, "--rollout", "0", "--shadow", "100")
        wait_until(lambda: active_with(server, 3), "version 3 loaded", 20, server=server)
        time.sleep(0.5)
        shadowed = rollout_report(server)["shadow"]["compared"]
        # Version 4 at 10%, over the running rollout of 3 (which must not become the default).
        second = time.monotonic()
        export(store, fitted, 4, "--rollout", "10")
        wait_until(lambda: active_with(server, 4), "version 4 loaded", 20, server=server)
        time.sleep(1.0)

        # In this process from here on: the time of each rewrite is then known to the ms.
        promoted = time.monotonic()
        assert rollout_main(["--store", str(store), "promote", "iris"]) == 0
        wait_until(
            lambda: rollout_report(server)["last_promotion"] is not None, "the promotion", 10
        )
        applied = time.monotonic()
        time.sleep(1.0)
        report = rollout_report(server)
        models = httpx.get(server.url + "/models/iris").json()
        rolled_back = time.monotonic()
        assert rollout_main(["--store", str(store), "rollback", "iris"]) == 0
        wait_until(lambda: rollout_report(server)["last_promotion"] is None, "the rollback", 10)
        time.sleep(0.5)
        ended = time.monotonic()
        after = rollout_report(server)
        answers = load.between(began, ended)

    assert [v for _, v in answers if v < 0] == [], "no failed request"
    at_zero = [(t, v) for t, v in answers if t < second]
    assert {v for _, v in at_zero} == {2}, "only the old default answers"
    assert shadowed > 0  # version 3 was really there, in the shadow
    assert_share_within(bins(at_zero, began, 3), 0)
    at_ten = [(t, v) for t, v in answers if second <= t < promoted]
    assert {v for _, v in at_ten} == {2, 4}, "version 3 never answers; 4 answers its share"
    assert_share_within(bins(at_ten, second, 4), 10)

    # Promoted: 4 answers; 2 stays loaded (latest:1 would unload it) for a rollback.
    assert (report["last_promotion"]["version"], report["last_promotion"]["previous"]) == (4, 2)
    assert report["last_promotion"]["previous_state"] == "AVAILABLE"
    assert report["rollback_restores"] == 2
    states = {v["version"]: v["state"] for v in models["versions"]}
    assert states.get(2) == "AVAILABLE" and models["default_version"] == 4
    assert applied - promoted < 2 * POLL_S + 1.0, "the promotion applied within one poll"
    # Answers that began a moment after the promotion was seen come from version 4 alone.
    assert {v for t, v in answers if applied + 0.2 < t < rolled_back} == {4}

    # Rolled back: 2 answers again once the watcher applies model.toml (two looks, one poll
    # interval apart), with nothing loaded in between.
    last_new = max(t for t, v in answers if v == 4)
    assert last_new - rolled_back < 2 * POLL_S + 1.0
    assert {v for t, v in answers if t > last_new} == {2}
    assert (after["default_version"], after["rollback_restores"]) == (2, None)
    assert server.output().count("model iris version 2 loaded") == 1
    # Each state change is a log line (the rollout and its candidate arrive in one sync here).
    assert "rollout none -> active: version 3" in server.output()
    assert "rollout active -> none" in server.output()
