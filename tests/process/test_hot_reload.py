"""Hot reload against the real process: data scientists drop model files into the store and the
service follows them, with no restart and no failed request (CONTRACT.md §1 "Loading and
versioning", and POST /admin/reload in §2).

Every test starts `python -m app` on a free loopback port over its own store in `tmp_path`, with
a short POLL_INTERVAL_S, changes the store the way a data scientist would (stage `.tmp-N`, then
rename it to `N`), and waits for the change by polling GET /models or /predict with a bounded
deadline.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from live_server import START_TIMEOUT_S, LiveServer, check_problem, wait_until
from onnx_factories import (
    IRIS_LABELS,
    diabetes_rows,
    iris_rows,
    write_garbage,
    write_iris_classifier,
    write_model_toml,
    write_regressor,
)

POLL_S = 0.3
CHANGE_TIMEOUT_S = 15.0
TOKEN = "hot-reload-test-token"
ROW = [5.1, 3.5, 1.4, 0.2]


# -- the server process ------------------------------------------------------------------------


class Server(LiveServer):
    def models(self) -> dict[str, dict[str, Any]]:
        answer = httpx.get(self.url + "/models", timeout=10.0)
        assert answer.status_code == 200, answer.text
        return {entry["name"]: entry for entry in answer.json()["models"]}

    def states(self, model: str = "iris") -> dict[int, str]:
        """{version: state} of `model` as GET /models shows it; {} when the model is not there."""
        entry = self.models().get(model)
        if entry is None:
            return {}
        return {v["version"]: v["state"] for v in entry["versions"]}

    def predict(
        self,
        version: int | None = None,
        row: list[float] = ROW,
        model: str = "iris",
    ) -> httpx.Response:
        body: dict[str, Any] = {"model": model, "features": row}
        if version is not None:
            body["version"] = version
        return httpx.post(self.url + "/predict", json=body, timeout=10.0)

    def served_version(self, row: list[float] = ROW) -> int:
        """The version that answers a request naming none; the request must succeed."""
        answer = self.predict(row=row)
        assert answer.status_code == 200, answer.text
        return int(answer.json()["version"])


@contextlib.contextmanager
def running_server(
    store: Path, *, poll_s: float = POLL_S, token: str | None = None, workers: int = 1
) -> Iterator[Server]:
    """`python -m app` on `store`, ready to serve; stopped (and its output printed) on exit."""
    env = {"WORKERS": str(workers), "POLL_INTERVAL_S": str(poll_s), "LOG_LEVEL": "warning"}
    if token is not None:
        env["ADMIN_TOKEN"] = token
    with Server.start(store, store.parent, env=env) as server:
        yield server


def wait_for(
    server: Server, what: str, check: Callable[[], bool], timeout_s: float = CHANGE_TIMEOUT_S
) -> float:
    """Call `check` until it is true; the seconds it took. Fails after `timeout_s`."""
    return wait_until(
        check, what, timeout_s, server=server, context=lambda: f"GET /models: {server.models()}"
    )


# -- the store ---------------------------------------------------------------------------------


def stage(
    model_dir: Path, version: int, write: Callable[..., Path] = write_iris_classifier, **kw: Any
) -> Path:
    """Write a version as `.tmp-N`, then rename it to `N` (an atomic move)."""
    staged = write(model_dir / f".tmp-{version}", **kw)
    final = model_dir / str(version)
    os.rename(staged, final)
    return final


def replace_model_file(version_dir: Path, data: bytes) -> None:
    """Swap `model.onnx` for `data` atomically (write a hidden file, then os.replace)."""
    scratch = version_dir / ".model.onnx.partial"
    scratch.write_bytes(data)
    os.replace(scratch, version_dir / "model.onnx")


def reference(model_file: Path, rows: list[list[float]]) -> list[dict[str, Any]]:
    """What onnxruntime itself answers for `rows` with an iris classifier file."""
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, {"input": np.asarray(rows, dtype=np.float32)})
    return [
        {
            "prediction": str(label),
            "probabilities": {name: float(p) for name, p in zip(IRIS_LABELS, probs, strict=True)},
        }
        for label, probs in zip(labels, probabilities, strict=True)
    ]


def same_prediction(answer: dict[str, Any], expected: dict[str, Any]) -> bool:
    if answer["prediction"] != expected["prediction"]:
        return False
    got = answer["probabilities"]
    return set(got) == set(expected["probabilities"]) and all(
        abs(got[k] - v) < 1e-5 for k, v in expected["probabilities"].items()
    )


def differing_row(old_file: Path, new_file: Path) -> list[float]:
    """An iris row whose probabilities differ clearly between the two model files."""
    rows = iris_rows(150)
    old, new = reference(old_file, rows), reference(new_file, rows)
    gaps = [
        max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in IRIS_LABELS)
        for a, b in zip(old, new, strict=True)
    ]
    best = int(np.argmax(gaps))
    assert gaps[best] > 0.05, "the two test models should disagree on some row"
    return rows[best]


# -- 1. a new version --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "toml", [None, 'version_policy = "latest:1"\n'], ids=["default", "latest1"]
)
def test_new_version_becomes_default_and_unloads_the_older_one(
    tmp_path: Path, toml: str | None
) -> None:
    store = tmp_path / "store"
    write_iris_classifier(store / "iris" / "1")
    if toml is not None:
        write_model_toml(store / "iris", toml)
    with running_server(store) as server:
        assert server.served_version() == 1
        new_dir = stage(store / "iris", 2, n_estimators=7)

        seen: list[int] = []

        def switched() -> bool:
            seen.append(server.served_version())  # every request succeeds meanwhile
            return seen[-1] == 2

        wait_for(server, "requests without a version served by version 2", switched)
        assert seen == sorted(seen), f"the default went back to 1 after 2: {seen}"
        states = server.states()
        assert states[2] == "AVAILABLE", states
        assert server.models()["iris"]["default_version"] == 2

        wait_for(server, "version 1 unloaded", lambda: server.states() == {2: "AVAILABLE"})
        check_problem(server.predict(version=1), 404)
        answer = server.predict()
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == 2
        assert same_prediction(answer.json(), reference(new_dir / "model.onnx", [ROW])[0])


# -- 2. staged folders -------------------------------------------------------------------------


def test_staged_folders_are_never_loaded(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_iris_classifier(store / "iris" / "1")
    write_model_toml(store / "iris", 'version_policy = "all"\n')
    with running_server(store) as server:
        staged_at = time.monotonic()
        write_iris_classifier(store / "iris" / ".tmp-2")
        write_iris_classifier(store / "iris" / "_3")
        write_iris_classifier(store / ".tmp-newmodel" / "1")
        write_iris_classifier(store / "_staging" / "1")
        # A version renamed into place afterwards is loaded: the watcher has looked at the
        # staged folders at least twice by then.
        stage(store / "iris", 5)
        wait_for(server, "version 5 loaded", lambda: server.states().get(5) == "AVAILABLE")
        while time.monotonic() - staged_at < 6 * POLL_S:
            assert set(server.models()) == {"iris"}
            assert server.states() == {1: "AVAILABLE", 5: "AVAILABLE"}
            time.sleep(POLL_S / 2)
        assert set(server.models()) == {"iris"}
        assert server.states() == {1: "AVAILABLE", 5: "AVAILABLE"}


# -- 3. a file still being written -------------------------------------------------------------


def test_half_written_file_is_not_served_until_complete(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_iris_classifier(store / "iris" / "1")
    source = write_iris_classifier(tmp_path / "source", n_estimators=7)
    data = (source / "model.onnx").read_bytes()
    with running_server(store) as server:
        target = store / "iris" / "3"
        target.mkdir()
        shutil.copy(source / "metadata.json", target / "metadata.json")
        with (target / "model.onnx").open("wb") as out:
            out.write(data[: len(data) // 2])
            out.flush()
            os.fsync(out.fileno())
            pause_until = time.monotonic() + 6 * POLL_S
            looks = 0
            while time.monotonic() < pause_until:
                states = server.states()
                assert states.get(3) != "AVAILABLE", f"half a file is served: {states}"
                answer = server.predict(version=3)
                assert answer.status_code in (404, 503), answer.text
                assert server.served_version() == 1
                looks += 1
                time.sleep(0.05)
            assert looks >= 5
            out.write(data[len(data) // 2 :])
        wait_for(server, "version 3 available", lambda: server.states().get(3) == "AVAILABLE")
        answer = server.predict()
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == 3
        assert same_prediction(answer.json(), reference(target / "model.onnx", [ROW])[0])


def test_file_copied_slowly_is_not_loaded_while_it_grows(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_iris_classifier(store / "iris" / "1")
    source = write_iris_classifier(tmp_path / "source", n_estimators=25)
    data = (source / "model.onnx").read_bytes()
    chunks = 32  # one every POLL_S / 4: no two looks see the same size and mtime
    size = -(-len(data) // chunks)
    target = store / "iris" / "2"

    def copy_slowly() -> None:
        target.mkdir()
        with (target / "model.onnx").open("wb") as out:
            for start in range(0, len(data), size):
                out.write(data[start : start + size])
                out.flush()
                if start == 0:
                    shutil.copy(source / "metadata.json", target / "metadata.json")
                time.sleep(POLL_S / 4)

    with running_server(store) as server, ThreadPoolExecutor(1) as pool:
        copying = pool.submit(copy_slowly)
        looks = 0
        while not copying.done():
            states = server.states()
            assert states.get(2) not in ("AVAILABLE", "FAILED"), (
                f"a file still growing was loaded: {states}"
            )
            assert server.served_version() == 1
            looks += 1
        copying.result()
        assert looks >= 10
        wait_for(server, "version 2 serving", lambda: server.served_version() == 2)
        assert server.states() == {2: "AVAILABLE"}
        answer = server.predict()
        assert same_prediction(answer.json(), reference(target / "model.onnx", [ROW])[0])


# -- 4. a corrupt file -------------------------------------------------------------------------


def test_corrupt_version_fails_and_is_retried_when_replaced(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_iris_classifier(store / "iris" / "1")
    with running_server(store) as server:
        stage(store / "iris", 2, write_garbage)
        wait_for(server, "version 2 FAILED", lambda: server.states().get(2) == "FAILED")
        entry = server.models()["iris"]
        failed = next(v for v in entry["versions"] if v["version"] == 2)
        assert isinstance(failed["error"], str) and failed["error"], entry
        assert entry["default_version"] == 1
        assert server.states() == {1: "AVAILABLE", 2: "FAILED"}
        for _ in range(20):
            assert server.served_version() == 1
        answer = server.predict(version=2)
        assert answer.status_code in (404, 503), answer.text
        check_problem(answer, answer.status_code)

        fixed = write_iris_classifier(store / "iris" / "2", n_estimators=7)  # over the bad file
        wait_for(server, "version 2 serving", lambda: server.served_version() == 2)
        assert server.states()[2] == "AVAILABLE"
        answer = server.predict()
        assert same_prediction(answer.json(), reference(fixed / "model.onnx", [ROW])[0])


# -- 5. a changed file -------------------------------------------------------------------------


def test_changed_model_file_is_reloaded(tmp_path: Path) -> None:
    store = tmp_path / "store"
    version_dir = write_iris_classifier(store / "iris" / "1", n_estimators=5)
    new_source = write_iris_classifier(tmp_path / "new", n_estimators=25)
    row = differing_row(version_dir / "model.onnx", new_source / "model.onnx")
    old = reference(version_dir / "model.onnx", [row])[0]
    new = reference(new_source / "model.onnx", [row])[0]
    with running_server(store) as server:
        answer = server.predict(row=row)
        assert answer.status_code == 200, answer.text
        assert same_prediction(answer.json(), old)

        replace_model_file(version_dir, (new_source / "model.onnx").read_bytes())

        def reloaded() -> bool:
            fresh = []
            for version in (None, 1):  # served while it reloads, named or not
                answer = server.predict(version=version, row=row)
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert body["version"] == 1
                assert same_prediction(body, old) or same_prediction(body, new), body
                fresh.append(same_prediction(body, new))
            return all(fresh)

        wait_for(server, "the new model.onnx serving", reloaded)
        rows = iris_rows(10)
        for row_, expected in zip(rows, reference(version_dir / "model.onnx", rows), strict=True):
            answer = server.predict(row=row_)
            assert same_prediction(answer.json(), expected), (row_, answer.json(), expected)
        assert server.states() == {1: "AVAILABLE"}


# -- 6. a pin in model.toml --------------------------------------------------------------------


def test_pinned_default_version_then_unpinned(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_iris_classifier(store / "iris" / "1")
    write_iris_classifier(store / "iris" / "2", n_estimators=7)
    write_model_toml(store / "iris", "default_version = 1\n")
    with running_server(store) as server:
        assert server.models()["iris"]["default_version"] == 1
        for _ in range(10):
            assert server.served_version() == 1

        write_model_toml(store / "iris", '# no pin any more\nversion_policy = "latest:1"\n')
        seen: list[int] = []

        def unpinned() -> bool:
            seen.append(server.served_version())
            return seen[-1] == 2

        wait_for(server, "version 2 the default once unpinned", unpinned)
        assert seen == sorted(seen), seen
        assert server.models()["iris"]["default_version"] == 2
        wait_for(server, "version 1 unloaded", lambda: server.states() == {2: "AVAILABLE"})
        assert server.served_version() == 2


def test_broken_model_toml_is_reported_and_the_versions_go_on_serving(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_iris_classifier(store / "iris" / "1")
    write_iris_classifier(store / "iris" / "2", n_estimators=7)
    write_model_toml(store / "iris", 'version_policy = "all"\n')
    with running_server(store) as server:
        assert server.served_version() == 2
        write_model_toml(store / "iris", 'version_policy = "all"\ndefault_version = "one"\n')

        def reported() -> bool:
            assert server.served_version() == 2
            return bool(server.models()["iris"]["error"])

        wait_for(server, "the model.toml error in GET /models", reported)
        assert server.states() == {1: "AVAILABLE", 2: "AVAILABLE"}
        assert server.predict(version=1).status_code == 200

        write_model_toml(store / "iris", 'version_policy = "all"\ndefault_version = 1\n')
        wait_for(server, "the fixed model.toml in effect", lambda: server.served_version() == 1)
        assert server.models()["iris"]["error"] is None
        assert server.states() == {1: "AVAILABLE", 2: "AVAILABLE"}


# -- 7. removed versions and models ------------------------------------------------------------


def test_removed_version_and_model_are_unloaded(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_iris_classifier(store / "iris" / "1")
    write_iris_classifier(store / "iris" / "2", n_estimators=7)
    write_model_toml(store / "iris", 'version_policy = "all"\n')
    diabetes_row = diabetes_rows(1)[0]
    with running_server(store) as server:
        assert server.served_version() == 2
        shutil.rmtree(store / "iris" / "2")

        seen: list[int] = []

        def version_2_gone() -> bool:
            seen.append(server.served_version())  # never an error meanwhile
            return server.states() == {1: "AVAILABLE"}

        wait_for(server, "version 2 unloaded", version_2_gone)
        assert seen == sorted(seen, reverse=True), f"2 served again after 1: {seen}"
        check_problem(server.predict(version=2), 404)
        for _ in range(10):
            assert server.served_version() == 1
        assert server.predict(version=1).status_code == 200

        # A new model folder, staged at the store's root and renamed, is served too.
        write_regressor(store / ".tmp-diabetes" / "1")
        os.rename(store / ".tmp-diabetes", store / "diabetes")
        wait_for(
            server,
            "model diabetes serving",
            lambda: server.predict(model="diabetes", row=diabetes_row).status_code == 200,
        )
        assert server.states("diabetes") == {1: "AVAILABLE"}
        shutil.rmtree(store / "diabetes")

        def diabetes_gone() -> bool:
            status = server.predict(model="diabetes", row=diabetes_row).status_code
            assert status in (200, 404)
            assert server.served_version() == 1
            return "diabetes" not in server.models()

        wait_for(server, "model diabetes unloaded", diabetes_gone)
        check_problem(server.predict(model="diabetes", row=diabetes_row), 404)
        assert server.served_version() == 1


# -- 8. POST /admin/reload ---------------------------------------------------------------------


def test_admin_reload_needs_the_token_and_applies_changes_before_answering(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    write_iris_classifier(store / "iris" / "1")
    with running_server(store, poll_s=0, token=TOKEN) as server:
        new_dir = stage(store / "iris", 2, n_estimators=7)
        reload_url = server.url + "/admin/reload"
        check_problem(httpx.post(reload_url), 401)
        check_problem(httpx.post(reload_url, headers={"Authorization": "Bearer wrong"}), 401)
        check_problem(httpx.post(reload_url, headers={"Authorization": f"Basic {TOKEN}"}), 401)
        assert server.states() == {1: "AVAILABLE"}, "watching is off: only the route loads"

        right = {"Authorization": f"Bearer {TOKEN}"}
        answer = httpx.post(reload_url, headers=right, timeout=30.0)
        assert answer.status_code == 200, answer.text
        report = answer.json()
        assert set(report) == {"loaded", "unloaded", "failed"}, report
        assert {"model": "iris", "version": 2} in report["loaded"], report
        assert {"model": "iris", "version": 1} in report["unloaded"], report
        assert report["failed"] == [], report
        # In effect as soon as the answer is in.
        answer = server.predict()
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == 2
        assert same_prediction(answer.json(), reference(new_dir / "model.onnx", [ROW])[0])
        assert server.states() == {2: "AVAILABLE"}

        stage(store / "iris", 3, write_garbage)
        report = httpx.post(reload_url, headers=right, timeout=30.0).json()
        assert report["loaded"] == [], report
        assert [(f["model"], f["version"]) for f in report["failed"]] == [("iris", 3)], report
        assert server.served_version() == 2

        report = httpx.post(reload_url, headers=right, timeout=30.0).json()
        assert report == {"loaded": [], "unloaded": [], "failed": []}, "nothing changed since"


def test_admin_reload_is_off_without_a_token(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_iris_classifier(store / "iris" / "1")
    with running_server(store, poll_s=0, token=None) as server:
        reload_url = server.url + "/admin/reload"
        check_problem(httpx.post(reload_url), 403)
        check_problem(httpx.post(reload_url, headers={"Authorization": "Bearer x"}), 403)


# -- 9. changes under load ---------------------------------------------------------------------

LOAD_S = 12.0
LOAD_THREADS = 8


@dataclass(frozen=True, slots=True)
class Outcome:
    asked: int | None  # the version the request named
    sent_at: float
    status: int  # 0: no HTTP answer at all
    version: int | None  # the version that answered
    detail: str


def hammer(url: str, index: int, stop: threading.Event, name_2: threading.Event) -> list[Outcome]:
    """POST /predict until `stop`: without a version, naming 1, and naming 2 once it serves."""
    outcomes: list[Outcome] = []
    with httpx.Client(base_url=url, timeout=10.0) as client:
        turn = index
        while not stop.is_set():
            kind, turn = turn % 3, turn + 1
            asked = None if kind == 0 else 1 if kind == 1 else 2 if name_2.is_set() else None
            body: dict[str, Any] = {"model": "iris", "features": ROW}
            if asked is not None:
                body["version"] = asked
            sent_at = time.monotonic()
            try:
                answer = client.post("/predict", json=body)
            except httpx.HTTPError as exc:
                outcomes.append(Outcome(asked, sent_at, 0, None, repr(exc)))
                continue
            version = answer.json()["version"] if answer.status_code == 200 else None
            outcomes.append(Outcome(asked, sent_at, answer.status_code, version, answer.text))
    return outcomes


def test_no_failed_request_while_versions_come_and_go(tmp_path: Path) -> None:
    store = tmp_path / "store"
    model_dir = store / "iris"
    write_iris_classifier(model_dir / "1")
    write_model_toml(model_dir, 'version_policy = "latest:2"\n')
    new_source = write_iris_classifier(tmp_path / "new", n_estimators=25)
    gone_since: dict[int, float] = {}  # version -> when the change that ends it began

    with running_server(store) as server:
        stop, name_2 = threading.Event(), threading.Event()
        with ThreadPoolExecutor(LOAD_THREADS) as pool:
            futures = [
                pool.submit(hammer, server.url, i, stop, name_2) for i in range(LOAD_THREADS)
            ]
            started = time.monotonic()
            try:

                def serving(expected: dict[int, str], default: int) -> Callable[[], bool]:
                    def check() -> bool:
                        entry = server.models()["iris"]
                        states = {v["version"]: v["state"] for v in entry["versions"]}
                        return states == expected and entry["default_version"] == default

                    return check

                stage(model_dir, 2)
                wait_for(server, "1 and 2", serving({1: "AVAILABLE", 2: "AVAILABLE"}, 2))
                name_2.set()
                gone_since[1] = time.monotonic()  # latest:2 unloads 1 once 3 serves
                stage(model_dir, 3)
                wait_for(server, "2 and 3", serving({2: "AVAILABLE", 3: "AVAILABLE"}, 3))
                shutil.rmtree(model_dir / "1")  # not served any more: nothing to reload later
                gone_since[2] = time.monotonic()
                shutil.rmtree(model_dir / "2")
                wait_for(server, "3 alone", serving({3: "AVAILABLE"}, 3))
                version_4 = stage(model_dir, 4)
                wait_for(server, "3 and 4", serving({3: "AVAILABLE", 4: "AVAILABLE"}, 4))
                row = differing_row(version_4 / "model.onnx", new_source / "model.onnx")
                expected = reference(new_source / "model.onnx", [row])[0]
                replace_model_file(version_4, (new_source / "model.onnx").read_bytes())

                def replaced() -> bool:
                    answer = server.predict(version=4, row=row)
                    assert answer.status_code == 200, answer.text
                    return same_prediction(answer.json(), expected)

                wait_for(server, "version 4's new model.onnx serving", replaced)
                changes_s = time.monotonic() - started
                # Keep the load on for a while after the last change (a duration, not a check).
                time.sleep(max(1.0, LOAD_S - changes_s))
            finally:
                stop.set()
            per_thread = [future.result() for future in futures]

    outcomes = [o for thread in per_thread for o in thread]
    total = len(outcomes)

    def expected_answer(o: Outcome) -> bool:
        if o.status == 200:
            return o.asked is None or o.version == o.asked
        if o.status == 404 and o.asked is not None:  # only a version already on its way out
            return o.asked in gone_since and o.sent_at >= gone_since[o.asked]
        return False

    unexpected = [o for o in outcomes if not expected_answer(o)]
    assert not unexpected, (
        f"{len(unexpected)} of {total} requests got an unexpected answer, e.g. {unexpected[:5]}"
    )
    for thread in per_thread:
        versions = [o.version for o in thread if o.asked is None]
        assert all(
            a is not None and b is not None and a <= b for a, b in itertools.pairwise(versions)
        ), f"a client saw an older default after a newer one ({total} requests): {versions}"
    defaults = {o.version for o in outcomes if o.asked is None}
    assert defaults == {1, 2, 3, 4}, f"defaults seen over {total} requests: {defaults}"
    assert any(o.status == 404 for o in outcomes if o.asked == 2), "2 was never asked for late"
    assert total > 500, f"only {total} requests in {LOAD_S} s"
    print(f"{total} requests in {time.monotonic() - started:.1f} s, changes took {changes_s:.1f} s")


# -- 10. several workers -----------------------------------------------------------------------


def test_every_worker_follows_a_new_version(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_iris_classifier(store / "iris" / "1")
    requests = 40

    def versions_over_new_connections() -> list[int]:
        # httpx.post opens a new connection every time, so that both workers take some.
        answers = [
            httpx.post(server.url + "/predict", json={"features": ROW}, timeout=10.0)
            for _ in range(requests)
        ]
        return [a.json()["version"] if a.status_code == 200 else a.status_code for a in answers]

    with running_server(store, workers=2) as server:
        # Both workers serve version 1 before the store changes.
        wait_for(
            server,
            "both workers ready",
            lambda: versions_over_new_connections() == [1] * requests,
            timeout_s=START_TIMEOUT_S,
        )
        stage(store / "iris", 2, n_estimators=7)

        def converged() -> bool:
            seen = versions_over_new_connections()
            assert set(seen) <= {1, 2}, f"a request failed while the workers reloaded: {seen}"
            return seen == [2] * requests

        took = wait_for(server, f"{requests} requests in a row served by version 2", converged)
        print(f"both workers served version 2 {took:.2f} s after the rename")
