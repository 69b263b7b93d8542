"""Fixtures for the API tests: a TestClient running the lifespan over a copy of the demo store,
onnxruntime's own answers for the same rows, and one check of a problem+json error body."""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from live_server import check_problem
from starlette.exceptions import StarletteDeprecationWarning

from app.config import Settings
from app.main import create_app

# Starlette asks for `httpx2` and warns when it finds only `httpx`; the client works the same.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

DEMO_STORE = Path(__file__).resolve().parents[2] / "models_store"
IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
IRIS_LABELS = ("setosa", "versicolor", "virginica")
DIABETES_FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
READY_TIMEOUT_S = 10.0

Serve = Callable[..., AbstractContextManager[TestClient]]


def copy_store(dest: Path, models: Sequence[str] | None = None) -> Path:
    """A copy of the demo store (or of some of its models) at `dest`."""
    if models is None:
        shutil.copytree(DEMO_STORE, dest)
    else:
        dest.mkdir(parents=True)
        for name in models:
            shutil.copytree(DEMO_STORE / name, dest / name)
    return dest


def wait_until_scanned(client: TestClient) -> httpx.Response:
    """Poll /health/ready until the first scan is done; the last answer."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        response = client.get("/health/ready")
        still_loading = (
            response.status_code == 503 and "still being loaded" in response.json()["detail"]
        )
        if not still_loading:
            return response
        if time.monotonic() > deadline:
            raise AssertionError(f"the store did not load within {READY_TIMEOUT_S} s")
        time.sleep(0.02)


@contextmanager
def serve_store(store: Path, *, ready: bool = True, **overrides: Any) -> Iterator[TestClient]:
    """A client of the app over `store`, after its first scan (and readiness, if `ready`)."""
    # gRPC is tested through real processes (tests/grpc_api); in-process apps leave it off.
    options: dict[str, Any] = {
        "poll_interval_s": 0,
        "default_model": None,
        "grpc_port": 0,
        **overrides,
    }
    settings = Settings(_env_file=None, model_store=store, **options)  # type: ignore[call-arg]
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = wait_until_scanned(client)
        if ready:
            assert response.status_code == 200, response.text
        yield client


@pytest.fixture(scope="session")
def serve() -> Serve:
    """`with serve(store, max_batch_rows=3) as client:` for tests that need their own settings."""
    return serve_store


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo store that no test changes."""
    return copy_store(tmp_path_factory.mktemp("demo") / "store")


@pytest.fixture(scope="session")
def client(demo_store: Path) -> Iterator[TestClient]:
    """The app over the demo store, with default limits, ready."""
    with serve_store(demo_store) as client:
        yield client


class Reference:
    """onnxruntime's own answers, from the same model.onnx files the app serves."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self._sessions: dict[tuple[str, int], ort.InferenceSession] = {}

    def session(self, model: str, version: int) -> ort.InferenceSession:
        key = (model, version)
        if key not in self._sessions:
            path = self.store / model / str(version) / "model.onnx"
            self._sessions[key] = ort.InferenceSession(
                str(path), providers=["CPUExecutionProvider"]
            )
        return self._sessions[key]

    def iris(
        self, rows: Sequence[Sequence[float]], version: int = 2
    ) -> tuple[list[str], list[dict[str, float]]]:
        """Labels and probabilities by label, per row."""
        sess = self.session("iris", version)
        labels, probabilities = sess.run(None, {"input": np.array(rows, dtype=np.float32)})
        return [str(label) for label in labels], [
            dict(zip(IRIS_LABELS, row, strict=True)) for row in probabilities.tolist()
        ]

    def diabetes(self, rows: Sequence[Sequence[float]]) -> list[float]:
        sess = self.session("diabetes", 1)
        (values,) = sess.run(None, {"input": np.array(rows, dtype=np.float32)})
        return values.reshape(-1).tolist()

    def pipeline(self, rows: Sequence[Mapping[str, Any]]) -> list[float]:
        """diabetes_pipeline, one [N, 1] input per column; `sex` a string."""
        inputs = {
            name: np.array(
                [[row[name]] for row in rows], dtype=object if name == "sex" else np.float32
            )
            for name in DIABETES_FEATURES
        }
        (values,) = self.session("diabetes_pipeline", 1).run(None, inputs)
        return values.reshape(-1).tolist()


@pytest.fixture(scope="session")
def reference(demo_store: Path) -> Reference:
    return Reference(demo_store)


@pytest.fixture(scope="session")
def problem() -> Callable[..., dict[str, Any]]:
    """`problem(response, 422, ["features", "petal_width"])`: see `check_problem`."""
    return check_problem
