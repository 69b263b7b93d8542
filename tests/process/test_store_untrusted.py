"""Hostile store entries against the real process: every entry of the store is untrusted.

A `model.toml` nested 5,000 arrays deep, link loops (a model folder, a version folder), FIFOs
(as `metadata.json`, as `model.onnx`, as an external-data file beside it), a socket as
`model.toml`, `samples.json` linked to `/dev/zero`, a 32 MB `samples.json`, a model folder
linked out of the store. Each must fail only its own model or version, with its reason in
GET /models, whether it is there at start-up or dropped in while the server runs; meanwhile the
other models answer `/predict` within a second, nothing answers 5xx, the log holds no traceback
and names each fault about once, later changes still apply, memory stays put, and SIGTERM still
stops the process.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from live_server import LiveServer, wait_until
from onnx_factories import (
    diabetes_rows,
    write_iris_classifier,
    write_model_toml,
    write_regressor,
)

POLL_S = 0.2
CHANGE_TIMEOUT_S = 20.0
ANSWER_WITHIN_S = 1.0
RSS_GROWTH_MAX_MIB = 50
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
DIABETES_ROW = diabetes_rows(1)[0]
BIG_SAMPLES_BYTES = 32 * 1024 * 1024
ADMIN_TOKEN = "store-faults-admin-token"


# -- the faults --------------------------------------------------------------------------------


def nested_toml(store: Path, outside: Path) -> Path:
    write_iris_classifier(store / "nested" / "1")
    write_model_toml(store / "nested", "x = " + "[" * 5000 + "]" * 5000 + "\n")
    return store / "nested"


def model_loop(store: Path, outside: Path) -> Path:
    (store / "loop").symlink_to("loop")
    return store / "loop"


def model_outside(store: Path, outside: Path) -> Path:
    write_iris_classifier(outside / "away" / "1")
    (store / "away").symlink_to(outside / "away")
    return store / "away"


def socket_toml(store: Path, outside: Path) -> Path:
    write_iris_classifier(store / "sock" / "1")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(store / "sock" / "model.toml"))  # the file stays once the socket closes
    return store / "sock"


def version_loop(version: Path, outside: Path) -> None:
    version.symlink_to(version.name)


def fifo_metadata(version: Path, outside: Path) -> None:
    write_iris_classifier(version)
    (version / "metadata.json").unlink()
    os.mkfifo(version / "metadata.json")


def fifo_model(version: Path, outside: Path) -> None:
    version.mkdir()
    os.mkfifo(version / "model.onnx")


def fifo_beside_the_model(version: Path, outside: Path) -> None:
    """onnxruntime opens a model's external data files itself: a FIFO among them would block
    it."""
    write_iris_classifier(version)
    os.mkfifo(version / "weights.bin")


def dev_zero_samples(version: Path, outside: Path) -> None:
    write_iris_classifier(version)
    (version / "samples.json").symlink_to("/dev/zero")


def big_samples(version: Path, outside: Path) -> None:
    write_iris_classifier(version)
    with (version / "samples.json").open("wb") as file:
        file.write(b'{"instances": [' + b"[5.1, 3.5, 1.4, 0.2], " * (BIG_SAMPLES_BYTES // 22))
        file.write(b"[5.1, 3.5, 1.4, 0.2]]}")


# model name -> (writer of the model, what its error says, lower case)
MODEL_FAULTS: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "nested": (nested_toml, "model.toml: nested too deeply to read"),
    "loop": (model_loop, "the model folder cannot be read: too many levels of symbolic links"),
    "away": (model_outside, "away is a link to outside the model store"),
    "sock": (socket_toml, "model.toml: cannot read: model.toml is a socket, not a regular file"),
}
# iris version -> (writer of the version folder, what its error says, lower case)
VERSION_FAULTS: dict[int, tuple[Callable[[Path, Path], None], str]] = {
    9: (version_loop, "the version folder cannot be read: too many levels of symbolic links"),
    10: (fifo_metadata, "metadata.json is a fifo, not a regular file"),
    11: (fifo_model, "model.onnx is a fifo, not a regular file"),
    12: (fifo_beside_the_model, "weights.bin is a fifo, not a regular file"),
    13: (dev_zero_samples, "samples.json is a link to outside the model store"),
    14: (big_samples, "samples.json is 33,554,4"),
}


def place_model_fault(store: Path, outside: Path, name: str) -> None:
    """Write a model fault beside the store and rename it in, as a deployment would."""
    write, _ = MODEL_FAULTS[name]
    staging = store.parent / "staging"
    staging.mkdir(exist_ok=True)
    os.rename(write(staging, outside), store / name)


def place_version_fault(store: Path, outside: Path, version: int) -> None:
    """The same for a version of iris; a link loop is made in place (renamed, it would point at
    its staged name)."""
    write, _ = VERSION_FAULTS[version]
    if write is version_loop:
        write(store / "iris" / str(version), outside)
        return
    staged = store / "iris" / f".tmp-{version}"
    write(staged, outside)
    os.rename(staged, store / "iris" / str(version))


# -- the server and what must go on serving ----------------------------------------------------


def first_output(folder: Path, row: list[float]) -> Any:
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": np.asarray([row], np.float32)})[0].reshape(-1)[0]


def write_good(store: Path) -> dict[str, Any]:
    """iris (every version loaded, version 1 the default) and diabetes; what onnxruntime
    answers for one row of each."""
    iris = write_iris_classifier(store / "iris" / "1")
    write_model_toml(store / "iris", 'version_policy = "all"\ndefault_version = 1\n')
    diabetes = write_regressor(store / "diabetes" / "1")
    return {
        "iris": str(first_output(iris, IRIS_ROW)),
        "diabetes": float(first_output(diabetes, DIABETES_ROW)),
    }


@contextlib.contextmanager
def running(store: Path) -> Iterator[LiveServer]:
    with LiveServer.start(
        store,
        store.parent,
        env={
            "WORKERS": "1",
            "POLL_INTERVAL_S": str(POLL_S),
            "LOG_LEVEL": "info",
            "ADMIN_TOKEN": ADMIN_TOKEN,
        },
    ) as server:
        yield server


def models(server: LiveServer) -> dict[str, dict[str, Any]]:
    answer = httpx.get(server.url + "/models", timeout=10.0)
    assert answer.status_code == 200, answer.text
    assert "Traceback" not in answer.text and str(server.store.parent) not in answer.text
    return {entry["name"]: entry for entry in answer.json()["models"]}


def rss_mib(server: LiveServer) -> float:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@dataclass
class Probe:
    """Asks both good models for a prediction, one after the other, until stopped (at most
    `limit_s`), noting each answer's status and time."""

    server: LiveServer
    expected: dict[str, Any]
    limit_s: float = 180.0
    answers: list[tuple[str, int, float]] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit_s
        with httpx.Client(base_url=self.server.url, timeout=10.0) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                for name, row in (("iris", IRIS_ROW), ("diabetes", DIABETES_ROW)):
                    started = time.perf_counter()
                    try:
                        answer = client.post("/predict", json={"model": name, "features": row})
                    except httpx.HTTPError as exc:  # no answer: as bad as a 5xx
                        self.wrong.append(f"{name}: {exc!r}")
                        continue
                    self.answers.append((name, answer.status_code, time.perf_counter() - started))
                    if answer.status_code == 200:
                        got = answer.json()["prediction"]
                        want = self.expected[name]
                        if got != (want if isinstance(want, str) else pytest.approx(want, 1e-5)):
                            self.wrong.append(f"{name}: {got}")
                time.sleep(0.02)

    @contextlib.contextmanager
    def running(self) -> Iterator[Probe]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(15.0)

    def check(self) -> float:
        """Every answer a 200 with what onnxruntime answers, within a second; the slowest."""
        assert self.answers, "no answers"
        statuses = {status for _, status, _ in self.answers}
        assert statuses == {200}, statuses
        assert not self.wrong, self.wrong
        slowest = max(elapsed for _, _, elapsed in self.answers)
        assert slowest < ANSWER_WITHIN_S, slowest
        return slowest


def check_faults(server: LiveServer, model_faults: list[str], version_faults: list[int]) -> None:
    """Each fault shows its reason in GET /models, and requests naming it are refused (never
    with a 500)."""
    listing = models(server)
    for name in model_faults:
        error = (listing[name]["error"] or "").lower()
        assert MODEL_FAULTS[name][1] in error, listing[name]
        assert listing[name]["versions"] == [], listing[name]
        answer = httpx.post(
            server.url + "/predict", json={"model": name, "features": IRIS_ROW}, timeout=10.0
        )
        assert answer.status_code == 503, answer.text
    versions = {v["version"]: v for v in listing["iris"]["versions"]}
    for version in version_faults:
        status = versions[version]
        assert status["state"] == "FAILED", status
        assert VERSION_FAULTS[version][1] in status["error"].lower(), status
        body = {"model": "iris", "version": version, "features": IRIS_ROW}
        answer = httpx.post(server.url + "/predict", json=body, timeout=10.0)
        assert answer.status_code == 503, answer.text
    assert listing["iris"]["default_version"] == 1
    assert versions[1]["state"] == "AVAILABLE"


def all_shown(server: LiveServer, model_faults: list[str], version_faults: list[int]) -> bool:
    listing = models(server)
    if any(not (listing.get(name) or {}).get("error") for name in model_faults):
        return False
    states = {v["version"]: v["state"] for v in listing["iris"]["versions"]}
    return all(states.get(version) == "FAILED" for version in version_faults)


def check_log(server: LiveServer) -> None:
    """No traceback; each fault named about once, not once a poll."""
    output = server.output()
    assert "Traceback" not in output, output[-5000:]
    for name in MODEL_FAULTS:
        lines = [line for line in output.splitlines() if f"model {name}:" in line]
        assert len(lines) <= 2, lines
    for version in VERSION_FAULTS:
        lines = [line for line in output.splitlines() if f"iris version {version} " in line]
        assert len(lines) <= 2, lines


def later_change_applies(server: LiveServer, store: Path) -> None:
    """A good version dropped in after the faults is served."""
    write_iris_classifier(store / "iris" / ".tmp-20", n_estimators=7)
    os.rename(store / "iris" / ".tmp-20", store / "iris" / "20")
    body = {"model": "iris", "version": 20, "features": IRIS_ROW}
    wait_until(
        lambda: httpx.post(server.url + "/predict", json=body, timeout=10.0).status_code == 200,
        "a version added after the faults served",
        CHANGE_TIMEOUT_S,
        server=server,
    )


def reload_answers(server: LiveServer) -> None:
    """A full rescan through /admin/reload answers at once: no entry blocks it."""
    started = time.monotonic()
    answer = httpx.post(
        server.url + "/admin/reload",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30.0,
    )
    assert answer.status_code == 200, answer.text
    assert time.monotonic() - started < 5.0


def stops_on_sigterm(server: LiveServer) -> None:
    started = time.monotonic()
    code = server.stop()
    assert code == 0, f"exit status {code} after SIGTERM"
    assert time.monotonic() - started < 10.0


# -- the tests ---------------------------------------------------------------------------------


def test_every_fault_at_start_up(tmp_path: Path) -> None:
    """All the faults in the store before the server starts: it gets ready, serves the good
    models and shows each fault's reason; later changes still apply."""
    store, outside = tmp_path / "store", tmp_path / "outside"
    expected = write_good(store)
    for name in MODEL_FAULTS:
        place_model_fault(store, outside, name)
    for version in VERSION_FAULTS:
        place_version_fault(store, outside, version)
    started = time.monotonic()
    with running(store) as server:
        ready_s = time.monotonic() - started
        with Probe(server, expected).running() as probe:
            check_faults(server, list(MODEL_FAULTS), list(VERSION_FAULTS))
            time.sleep(10 * POLL_S)  # looked at again and again
            check_faults(server, list(MODEL_FAULTS), list(VERSION_FAULTS))
            reload_answers(server)
            later_change_applies(server, store)
        slowest = probe.check()
        check_log(server)
        print(f"ready after {ready_s:.2f} s; slowest of {len(probe.answers)}: {slowest:.3f} s")
        stops_on_sigterm(server)


def test_every_fault_dropped_into_a_running_server(tmp_path: Path) -> None:
    """The faults dropped in one at a time while requests flow: each is shown, the good models
    answer throughout, memory stays put, later changes still apply."""
    store, outside = tmp_path / "store", tmp_path / "outside"
    expected = write_good(store)
    with running(store) as server:
        for _ in range(20):  # warm: the first requests allocate what serving needs
            httpx.post(server.url + "/predict", json={"model": "iris", "features": IRIS_ROW})
        rss_before = rss_mib(server)
        placed_models: list[str] = []
        placed_versions: list[int] = []
        with Probe(server, expected).running() as probe:
            for name in MODEL_FAULTS:
                place_model_fault(store, outside, name)
                placed_models.append(name)
                wait_until(
                    lambda: all_shown(server, placed_models, placed_versions),
                    f"the fault {name} shown",
                    CHANGE_TIMEOUT_S,
                    server=server,
                )
            for version in VERSION_FAULTS:
                place_version_fault(store, outside, version)
                placed_versions.append(version)
                wait_until(
                    lambda: all_shown(server, placed_models, placed_versions),
                    f"the fault at iris version {version} shown",
                    CHANGE_TIMEOUT_S,
                    server=server,
                )
            check_faults(server, placed_models, placed_versions)
            time.sleep(10 * POLL_S)
            check_faults(server, placed_models, placed_versions)
            reload_answers(server)
            later_change_applies(server, store)
        slowest = probe.check()
        growth = rss_mib(server) - rss_before
        assert growth < RSS_GROWTH_MAX_MIB, f"RSS grew {growth:.1f} MiB"
        check_log(server)
        print(
            f"slowest of {len(probe.answers)} answers: {slowest:.3f} s; "
            f"RSS {rss_before:.1f} MiB, then {growth:+.1f} MiB"
        )
        stops_on_sigterm(server)


def test_touching_the_serving_version_under_latest_1_loads_nothing_else(tmp_path: Path) -> None:
    """With latest:1, touching a file of the serving version reloads it once it settles; the
    version below it is never loaded in between."""
    store = tmp_path / "store"
    expected = write_good(store)
    write_iris_classifier(store / "churn" / "1", n_estimators=3)
    write_iris_classifier(store / "churn" / "2", n_estimators=4)
    write_model_toml(store / "churn", 'version_policy = "latest:1"\n')
    with running(store) as server:
        seen: set[tuple[int, str]] = set()
        with Probe(server, expected).running() as probe:
            metadata = store / "churn" / "2" / "metadata.json"
            deadline = time.monotonic() + 20 * POLL_S
            touches = 0
            while time.monotonic() < deadline:
                if touches < 5:
                    metadata.touch()
                    touches += 1
                for v in models(server)["churn"]["versions"]:
                    seen.add((v["version"], v["state"]))
                answer = httpx.post(
                    server.url + "/predict",
                    json={"model": "churn", "features": IRIS_ROW},
                    timeout=10.0,
                )
                assert answer.status_code == 200, answer.text
                assert answer.json()["version"] == 2
                time.sleep(POLL_S / 4)
        probe.check()
        assert seen == {(2, "AVAILABLE")}, seen
        assert "model churn version 1" not in server.output()
