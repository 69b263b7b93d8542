"""Fault injection on the model store, against the real process (CONTRACT.md §1 "Loading and
versioning": a file that fails to load is FAILED with the reason, never served, and the others go
on serving).

Most faults are dropped, one at a time, into the store of one shared server (`python -m app` with
a short POLL_INTERVAL_S), as a new model or as a new version of a serving one; each test waits
for the fault to show in GET /models, checks that requests naming it are refused, that the good
models still answer what onnxruntime answers, and removes its fault again. The store itself
missing at start-up or renamed away while serving gets a server of its own.

Every answer of every server is checked for a traceback or a path of the server's file system.

The shared server runs as root in CI, where file modes do not stop reads; it is started without
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (dropped from the capability bounding set before exec),
so that a folder with mode 000 is as unreadable to it as to any other user. (Switching to
`nobody` does not work everywhere: the interpreter may live under a folder only root can enter.)
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from live_server import LiveServer, check_problem, wait_until
from onnx import TensorProto, helper
from onnx_factories import (
    IRIS_LABELS,
    diabetes_rows,
    iris_rows,
    write_empty,
    write_iris_classifier,
    write_model_toml,
    write_regressor,
)

POLL_S = 0.2
CHANGE_TIMEOUT_S = 15.0
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
DIABETES_ROW = diabetes_rows(1)[0]
SECRET = [1234.5, 2345.5, 3456.5, 4567.5]  # what the external-data models must never read
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2


# -- the server process ------------------------------------------------------------------------


def drop_file_permission_override() -> None:
    """preexec_fn: the process about to exec loses the capabilities that let root ignore file
    modes (at exec, root's new capabilities are cut down to the bounding set)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_CAPBSET_DROP, {cap}): {os.strerror(errno)}")


def effective_capabilities(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no CapEff for process {pid}")


class Server(LiveServer):
    @property
    def private(self) -> Path:
        """The folder holding the store (and secrets); no answer may name it."""
        return self.store.parent

    def check(self, answer: httpx.Response) -> httpx.Response:
        """No traceback and no server path in `answer`."""
        text = answer.text
        for form in {str(self.private), str(self.private.resolve())}:
            assert form not in text, f"a server path in an answer: {text}"
        assert "Traceback" not in text, text
        assert 'File "' not in text, text
        return answer

    def get(self, path: str) -> httpx.Response:
        return self.check(httpx.get(self.url + path, timeout=10.0))

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.check(httpx.post(self.url + path, json=body, timeout=10.0))

    def models(self) -> dict[str, dict[str, Any]]:
        answer = self.get("/models")
        assert answer.status_code == 200, answer.text
        return {entry["name"]: entry for entry in answer.json()["models"]}

    def versions(self, model: str) -> dict[int, dict[str, Any]]:
        """{version: {"version", "state", "error"}} of `model`; {} when it is not listed."""
        entry = self.models().get(model)
        return {v["version"]: v for v in entry["versions"]} if entry else {}

    def state(self, model: str, version: int) -> str | None:
        status = self.versions(model).get(version)
        return status["state"] if status else None

    def predict(self, model: str, row: list[float], version: int | None = None) -> httpx.Response:
        body: dict[str, Any] = {"model": model, "features": row}
        if version is not None:
            body["version"] = version
        return self.post("/predict", body)


@contextlib.contextmanager
def running_server(
    store: Path, *, ready: bool = True, unprivileged: bool = False
) -> Iterator[Server]:
    """`python -m app` on `store`: live (and ready, if `ready`); stopped, its output printed,
    on exit. `unprivileged`: file modes bind it even when the tests run as root."""
    drop = unprivileged and os.geteuid() == 0
    with Server.start(
        store,
        store.parent,
        env={"WORKERS": "1", "POLL_INTERVAL_S": str(POLL_S), "LOG_LEVEL": "warning"},
        wait_ready=ready,
        preexec_fn=drop_file_permission_override if drop else None,
    ) as server:
        if drop:
            caps = effective_capabilities(server.process.pid)
            assert not caps & (1 << CAP_DAC_OVERRIDE | 1 << CAP_DAC_READ_SEARCH), hex(caps)
        yield server


def wait_for(
    server: Server, what: str, check: Callable[[], bool], timeout_s: float = CHANGE_TIMEOUT_S
) -> None:
    wait_until(
        check,
        what,
        timeout_s,
        server=server,
        context=lambda: f"GET /models: {httpx.get(server.url + '/models', timeout=10.0).text}",
    )


# -- what must go on serving -------------------------------------------------------------------


@dataclass(frozen=True)
class Good:
    """The good models of a store and what onnxruntime answers for them."""

    iris: dict[str, Any]
    diabetes: float

    @classmethod
    def write(cls, store: Path) -> Good:
        iris = write_iris_classifier(store / "iris" / "1")
        diabetes = write_regressor(store / "diabetes" / "1")
        session = ort.InferenceSession(str(iris / "model.onnx"), providers=["CPUExecutionProvider"])
        labels, probabilities = session.run(None, {"input": np.asarray([IRIS_ROW], np.float32)})
        session = ort.InferenceSession(
            str(diabetes / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        (values,) = session.run(None, {"input": np.asarray([DIABETES_ROW], np.float32)})
        return cls(
            iris={
                "prediction": str(labels[0]),
                "probabilities": dict(zip(IRIS_LABELS, probabilities[0].tolist(), strict=True)),
            },
            diabetes=float(values.reshape(-1)[0]),
        )

    def serve(self, server: Server) -> None:
        """Both models answer as onnxruntime does, by default and by version."""
        for version in (None, 1):
            answer = server.predict("iris", IRIS_ROW, version)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["version"] == 1
            assert body["prediction"] == self.iris["prediction"], body
            assert body["probabilities"] == pytest.approx(self.iris["probabilities"], abs=1e-6)
            answer = server.predict("diabetes", DIABETES_ROW, version)
            assert answer.status_code == 200, answer.text
            assert answer.json()["prediction"] == pytest.approx(self.diabetes, rel=1e-5)
        answer = server.post("/predict/batch", {"model": "iris", "instances": iris_rows(6)})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 6
        assert server.get("/health/ready").status_code == 200


# -- faulty model files ------------------------------------------------------------------------


def write_random_bytes(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(random.Random(7).randbytes(4096))
    return folder


def _serialize(graph: onnx.GraphProto, *opsets: tuple[str, int]) -> bytes:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(domain, v) for domain, v in opsets]
    )
    model.ir_version = 9
    return model.SerializeToString()


def write_missing_operator(folder: Path) -> Path:
    """A valid ONNX graph whose one node is an operator no runtime has."""
    graph = helper.make_graph(
        [helper.make_node("Nope", ["x"], ["y"], domain="com.example.missing")],
        "missing_op",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    folder.mkdir(parents=True, exist_ok=True)
    data = _serialize(graph, ("", 18), ("com.example.missing", 1))
    (folder / "model.onnx").write_bytes(data)
    return folder


def external_data_model(location: str) -> bytes:
    """y = x + w, with the 4 floats of `w` stored outside the model file, at `location`."""
    weights = TensorProto()
    weights.name = "w"
    weights.data_type = TensorProto.FLOAT
    weights.dims.extend([4])
    weights.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = weights.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        initializer=[weights],
    )
    return _serialize(graph, ("", 18))


def write_secret(path: Path) -> Path:
    np.asarray(SECRET, dtype=np.float32).tofile(path)
    return path


def outside_data_writer(where: str) -> Callable[[Path], Path]:
    """A model whose external data is `where` relative to the model file's folder: the store's
    root ("store"), the folder holding the store ("outside"), or an absolute path."""

    def write(folder: Path) -> Path:
        # folder is <private>/store/<model>/<version> (or its staged twin beside it)
        store = folder.parent.parent
        location = {
            "store": "../../secret.bin",
            "outside": "../../../secret.bin",
            "absolute": str(store.parent / "secret.bin"),
        }[where]
        write_secret(store / "secret.bin")
        write_secret(store.parent / "secret.bin")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.onnx").write_bytes(external_data_model(location))
        return folder

    return write


def write_wrong_feature_count(folder: Path) -> Path:
    """The iris classifier (4 features) with a metadata.json that lists 3."""
    write_iris_classifier(folder)
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["features"] = metadata["features"][:3]
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


@dataclass(frozen=True)
class Fault:
    write: Callable[[Path], Path]
    reason: tuple[str, ...]  # each of these is in the error GET /models shows (lower case)


FAULTS = {
    "empty": Fault(write_empty, ("model.onnx",)),
    "random-bytes": Fault(write_random_bytes, ("model.onnx",)),
    "missing-operator": Fault(write_missing_operator, ("com.example.missing", "nope")),
    "external-data-in-store": Fault(outside_data_writer("store"), ("external data",)),
    "external-data-outside": Fault(outside_data_writer("outside"), ("external data",)),
    "external-data-absolute": Fault(outside_data_writer("absolute"), ("external data",)),
    "wrong-feature-count": Fault(write_wrong_feature_count, ("metadata.json", "3 features")),
}


# -- the shared server -------------------------------------------------------------------------


@dataclass
class Shared:
    server: Server
    store: Path
    good: Good
    versions: Iterator[int] = field(default_factory=lambda: itertools.count(10))


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """One unprivileged server over iris (pinned to version 1, every version loaded) and
    diabetes; the tests add and remove their faults."""
    store = tmp_path_factory.mktemp("faults") / "store"
    good = Good.write(store)
    write_model_toml(store / "iris", 'version_policy = "all"\ndefault_version = 1\n')
    with running_server(store, unprivileged=True) as server:
        good.serve(server)
        yield Shared(server, store, good)


@dataclass(frozen=True)
class Placed:
    model: str
    version: int
    path: Path  # the folder to remove afterwards

    @property
    def whole_model(self) -> bool:
        return self.path.name == self.model


def place(
    shared: Shared,
    placement: str,
    name: str,
    write: Callable[[Path], Path],
    mode: int | None = None,
) -> Placed:
    """Write a version with `write` under a staged name, set its folder's `mode`, and rename it
    into the store: as version 1 of a new model `name`, or as a new version of iris."""
    store = shared.store
    if placement == "model":
        staged = store / f".tmp-{name}"
        write(staged / "1")
        if mode is not None:
            (staged / "1").chmod(mode)
        os.rename(staged, store / name)
        return Placed(name, 1, store / name)
    version = next(shared.versions)
    staged = store / "iris" / f".tmp-{version}"
    write(staged)
    if mode is not None:
        staged.chmod(mode)
    os.rename(staged, store / "iris" / str(version))
    return Placed("iris", version, store / "iris" / str(version))


@contextlib.contextmanager
def removed_afterwards(shared: Shared, *placed: Placed) -> Iterator[None]:
    """Take the faults out of the store again once the test is done with them."""
    try:
        yield
    finally:
        for one in placed:
            for folder in (one.path, one.path / "1"):
                with contextlib.suppress(FileNotFoundError):
                    folder.chmod(0o755)
            shutil.rmtree(one.path, ignore_errors=True)
        server = shared.server

        def gone() -> bool:
            answer = httpx.get(server.url + "/models", timeout=10.0).json()
            entries = {e["name"]: e for e in answer["models"]}
            for one in placed:
                if one.whole_model and one.model in entries:
                    return False
                if not one.whole_model and any(
                    v["version"] == one.version for v in entries[one.model]["versions"]
                ):
                    return False
            return True

        wait_for(server, "the faults gone from the store", gone)


def assert_never_served(shared: Shared, placed: Placed) -> None:
    """Requests naming the failed version are 503; so is its model's default, when it has no
    other version."""
    server = shared.server
    row = IRIS_ROW
    check_problem(server.predict(placed.model, row, placed.version), 503)
    batch = {"model": placed.model, "version": placed.version, "instances": [row]}
    check_problem(server.post("/predict/batch", batch), 503)
    v2 = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": row}]}
    answer = server.post(f"/v2/models/{placed.model}/versions/{placed.version}/infer", v2)
    assert answer.status_code == 503, answer.text
    if placed.whole_model:
        check_problem(server.predict(placed.model, row), 503)
        check_problem(server.get(f"/models/{placed.model}"), 503)
        assert server.get(f"/v2/models/{placed.model}/ready").status_code == 400


def wait_failed(shared: Shared, placed: Placed) -> str:
    """Wait for FAILED; the error shown, which must hold after a few more looks."""
    server = shared.server
    wait_for(
        server,
        f"{placed.model} version {placed.version} FAILED",
        lambda: server.state(placed.model, placed.version) == "FAILED",
    )
    time.sleep(2 * POLL_S)  # looked at again: not retried into service, unchanged
    status = server.versions(placed.model)[placed.version]
    assert status["state"] == "FAILED", status
    error = status["error"]
    assert isinstance(error, str) and error, status
    return error


# -- 1. model files that cannot serve ----------------------------------------------------------


@pytest.mark.parametrize("fault", list(FAULTS))
def test_bad_model_file_is_failed_with_a_reason_and_never_served(shared, fault):
    """The fault as version 1 of a new model, and as a new version of iris."""
    spec = FAULTS[fault]
    placed = [place(shared, placement, fault, spec.write) for placement in ("model", "version")]
    with removed_afterwards(shared, *placed):
        for one in placed:
            error = wait_failed(shared, one)
            for fragment in spec.reason:
                assert fragment in error.lower(), error
            assert_never_served(shared, one)
        shared.good.serve(shared.server)
        listing = shared.server.get("/models").text
        assert not any(f"{v}" in listing for v in SECRET), listing


def test_external_data_inside_its_own_folder_is_served(shared):
    """The control for the external-data faults: the same model, its data beside it, serves
    (and adds its data to the input)."""

    def write(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.onnx").write_bytes(external_data_model("weights.bin"))
        write_secret(folder / "weights.bin")
        return folder

    placed = place(shared, "model", "external-data-inside", write)
    with removed_afterwards(shared, placed):
        server = shared.server
        wait_for(server, "served", lambda: server.state(placed.model, 1) == "AVAILABLE")
        answer = server.predict(placed.model, [0.0, 0.0, 0.0, 0.0])
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"]["y"] == pytest.approx(SECRET)
        shared.good.serve(server)


# -- 2. a version folder the server cannot read ------------------------------------------------


def test_unreadable_version_folder_is_failed_and_retried_once_readable(shared):
    """Mode 000 on the folder of version 1 of a new model, and of a new version of iris."""
    placed = [
        place(shared, placement, "unreadable", write_iris_classifier, mode=0o000)
        for placement in ("model", "version")
    ]
    server = shared.server
    with removed_afterwards(shared, *placed):
        for one in placed:
            error = wait_failed(shared, one)
            assert "permission" in error.lower(), error
            assert_never_served(shared, one)
        shared.good.serve(server)

        for one in placed:
            (one.path / "1" if one.whole_model else one.path).chmod(0o755)
        for one in placed:
            wait_for(
                server,
                f"{one.model} version {one.version} served once readable",
                lambda one=one: server.state(one.model, one.version) == "AVAILABLE",
            )
            answer = server.predict(one.model, IRIS_ROW, one.version)
            assert answer.status_code == 200, answer.text
            assert answer.json()["prediction"] == shared.good.iris["prediction"]
        shared.good.serve(server)


# -- 3. model.toml -----------------------------------------------------------------------------

BROKEN_TOML = {
    "syntax": ('version_policy = "all\ndefault_version = 1\n', "bad toml syntax"),
    "unknown-key": (
        'version_policy = "all"\ndefault_version = 1\nmax_workers = 3\n',
        "max_workers",
    ),
}
GOOD_TOML = 'version_policy = "all"\ndefault_version = 1\n'
FIXED_TOML = 'version_policy = "all"\n'  # no pin: version 2 becomes the default


def write_two_versions(folder: Path) -> Path:
    """`folder` is version 1; version 2, a different forest, goes beside it."""
    write_iris_classifier(folder)
    write_iris_classifier(folder.parent / "2", n_estimators=7)
    return folder


def two_versions_with_toml(text: str) -> Callable[[Path], Path]:
    """A writer for `place`: two versions and a model.toml holding `text`."""

    def write(folder: Path) -> Path:
        write_two_versions(folder)
        write_model_toml(folder.parent, text)
        return folder

    return write


def default_served(server: Server, model: str) -> int:
    answer = server.predict(model, IRIS_ROW)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["version"])


@pytest.mark.parametrize("broken", list(BROKEN_TOML))
def test_broken_model_toml_keeps_the_previous_settings_until_fixed(shared, broken):
    text, fragment = BROKEN_TOML[broken]
    name = f"toml-{broken}"
    store, server = shared.store, shared.server

    placed = place(shared, "model", name, two_versions_with_toml(GOOD_TOML))
    with removed_afterwards(shared, placed):
        wait_for(
            server,
            "both versions served",
            lambda: (
                {v: s["state"] for v, s in server.versions(name).items()}
                == {1: "AVAILABLE", 2: "AVAILABLE"}
            ),
        )
        assert default_served(server, name) == 1

        write_model_toml(store / name, text)

        def reported() -> bool:
            assert default_served(server, name) == 1  # served throughout
            return bool(server.models()[name]["error"])

        wait_for(server, "the model.toml error in GET /models", reported)
        time.sleep(2 * POLL_S)
        entry = server.models()[name]
        assert fragment in entry["error"].lower(), entry
        assert entry["default_version"] == 1, entry
        assert entry["version_policy"] == "all", entry
        assert {v["version"]: v["state"] for v in entry["versions"]} == {
            1: "AVAILABLE",
            2: "AVAILABLE",
        }
        assert default_served(server, name) == 1
        assert server.predict(name, IRIS_ROW, 2).status_code == 200
        shared.good.serve(server)

        write_model_toml(store / name, FIXED_TOML)
        wait_for(
            server, "the fixed model.toml in effect", lambda: default_served(server, name) == 2
        )
        entry = server.models()[name]
        assert entry["error"] is None, entry
        assert entry["default_version"] == 2, entry
        shared.good.serve(server)


@pytest.mark.parametrize("broken", list(BROKEN_TOML))
def test_model_with_a_broken_model_toml_from_the_start_serves_once_fixed(shared, broken):
    text, fragment = BROKEN_TOML[broken]
    name = f"new-toml-{broken}"
    server = shared.server

    placed = place(shared, "model", name, two_versions_with_toml(text))
    with removed_afterwards(shared, placed):
        wait_for(server, "the model listed", lambda: name in server.models())
        time.sleep(2 * POLL_S)
        entry = server.models()[name]
        assert fragment in (entry["error"] or "").lower(), entry
        assert entry["versions"] == [], entry
        check_problem(server.predict(name, IRIS_ROW), 503)
        check_problem(server.get(f"/models/{name}"), 503)
        shared.good.serve(server)

        write_model_toml(shared.store / name, GOOD_TOML)
        wait_for(server, "served once fixed", lambda: server.predict(name, IRIS_ROW).is_success)
        entry = server.models()[name]
        assert entry["error"] is None, entry
        assert default_served(server, name) == 1
        shared.good.serve(server)


# -- 4. the store folder itself ----------------------------------------------------------------


def test_unreadable_store_keeps_what_is_loaded_serving(shared):
    server, store = shared.server, shared.store
    try:
        store.chmod(0o000)
        deadline = time.monotonic() + 5 * POLL_S
        while time.monotonic() < deadline:  # several looks at the unreadable store
            shared.good.serve(server)
            assert {"iris", "diabetes"} <= set(server.models())
        assert server.versions("iris")[1]["state"] == "AVAILABLE"
    finally:
        store.chmod(0o755)
    placed = place(shared, "model", "after-outage", write_iris_classifier)
    with removed_afterwards(shared, placed):
        wait_for(server, "watching again", lambda: server.state("after-outage", 1) == "AVAILABLE")
        shared.good.serve(server)


def test_store_missing_at_start_up_is_live_not_ready_until_it_appears(tmp_path):
    store = tmp_path / "store"
    with running_server(store, ready=False) as server:
        assert server.get("/health/live").status_code == 200
        deadline = time.monotonic() + 5 * POLL_S
        while time.monotonic() < deadline:
            check_problem(server.get("/health/ready"), 503)
            assert server.get("/v2/health/ready").status_code == 400
            assert server.models() == {}
            answer = server.predict("iris", IRIS_ROW)
            assert answer.status_code in (404, 503), answer.text
            check_problem(answer, answer.status_code)
            time.sleep(0.05)

        staging = tmp_path / ".store-staging"
        good = Good.write(staging)
        os.rename(staging, store)
        wait_for(server, "ready", lambda: server.get("/health/ready").status_code == 200)
        wait_for(server, "both models", lambda: {"iris", "diabetes"} <= set(server.models()))
        good.serve(server)


def test_store_renamed_away_while_serving_keeps_serving(tmp_path):
    store = tmp_path / "store"
    good = Good.write(store)
    with running_server(store) as server:
        good.serve(server)
        away = tmp_path / "store-away"
        os.rename(store, away)
        deadline = time.monotonic() + 6 * POLL_S
        while time.monotonic() < deadline:  # several looks at a store that is not there
            good.serve(server)
            models = server.models()
            assert {"iris", "diabetes"} <= set(models), models
            assert all(v["state"] == "AVAILABLE" for m in models.values() for v in m["versions"]), (
                models
            )
        os.rename(away, store)
        good.serve(server)

        # Watching goes on: a model added after the store came back is served.
        write_regressor(store / ".tmp-late" / "1")
        os.rename(store / ".tmp-late", store / "late")
        wait_for(
            server,
            "a model added after the outage",
            lambda: server.predict("late", DIABETES_ROW).status_code == 200,
        )
        assert server.predict("late", DIABETES_ROW).json()["prediction"] == pytest.approx(
            good.diabetes, rel=1e-5
        )
        good.serve(server)
