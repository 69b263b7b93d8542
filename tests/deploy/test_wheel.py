"""The install the image relies on: the wheel, in a fresh virtual environment outside the repo.

Builds the wheel from a copy of the source tree, installs it (dependencies from the package index,
through pip's cache) into a new virtual environment, and serves a copy of the demo store with the
`model-server` console script from a folder outside the repo: what `pip install .` in the
Dockerfile and `python -m app` in the container do. Takes ~15 s with a warm pip cache.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from live_server import REPO, copy_demo_store, server_environ, start_server

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
INSTALL_TIMEOUT_S = 900
# Never from the test run's environment (besides the server's settings): anything that would
# make the fresh environment see the repo or the dev environment instead of its own install.
LEAKS = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
# Build outputs and local state a source copy leaves out.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
    ".ruff_cache", ".env", "results",
)  # fmt: skip


@dataclass(frozen=True)
class Install:
    wheel: Path
    bin: Path
    env: dict[str, str]
    outside: Path


def clean_env() -> dict[str, str]:
    return {k: v for k, v in server_environ().items() if k not in LEAKS}


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    root = tmp_path_factory.mktemp("wheel")
    assert not root.is_relative_to(REPO)
    env = clean_env()
    # A copy, so that the build neither writes into the repo nor picks up a stale build/ there.
    source = root / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    wheels = root / "wheels"
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), "."],
        cwd=source,
        env=env,
        timeout=INSTALL_TIMEOUT_S,
    )
    (wheel,) = wheels.glob("onnx_model_server-*.whl")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=root, env=env, timeout=120)
    # Dependencies from the index, through pip's cache; no bytecode compiling: seconds saved.
    pip_install = ["-m", "pip", "install", "--quiet", "--no-compile", "--prefer-binary"]
    python = str(venv / "bin" / "python")
    run([python, *pip_install, str(wheel)], cwd=root, env=env, timeout=INSTALL_TIMEOUT_S)
    outside = root / "cwd"
    outside.mkdir()
    return Install(wheel, venv / "bin", env, outside)


def test_wheel_holds_the_packages_and_nothing_else(install: Install) -> None:
    with zipfile.ZipFile(install.wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    tops = {name.split("/", 1)[0] for name in names}
    assert {"app", "ml", "loadtest"} <= tops
    assert tops - {"app", "ml", "loadtest"} == {entry_points.split("/", 1)[0]}, (
        f"unexpected: {sorted(tops)}"
    )
    assert "app/__main__.py" in names
    assert "app/routes/__init__.py" in names or any(n.startswith("app/routes/") for n in names)
    # The status page's files are package data, which setuptools leaves out unless told.
    assert {"app/ui/index.html", "app/ui/ui.css", "app/ui/ui.js"} <= set(names)
    # The demo models are the image's business (COPY models_store), not the wheel's.
    assert not [n for n in names if n.endswith(".onnx") or "__pycache__" in n]
    assert "model-server = app.__main__:main" in scripts
    assert "\nmodel-export = ml." in scripts
    assert "model-loadtest = loadtest.__main__:main" in scripts
    assert "model-rollout = ml.cli.rollout:main" in scripts


def test_the_install_is_its_own(install: Install) -> None:
    where = run(
        [str(install.bin / "python"), "-c", "import app, ml; print(app.__file__, ml.__file__)"],
        cwd=install.outside,
        env=install.env,
        timeout=60,
    )
    venv = install.bin.parent
    assert all(Path(p).is_relative_to(venv) for p in where.split()), where
    # The runtime needs no scikit-learn: that is the export extra's.
    probe = "import importlib.util as u; print(u.find_spec('sklearn'))"
    missing = run(
        [str(install.bin / "python"), "-c", probe], cwd=install.outside, env=install.env, timeout=60
    )
    assert missing.strip() == "None"


@pytest.fixture
def server(install: Install, tmp_path: Path) -> Iterator[str]:
    server = start_server(
        copy_demo_store(tmp_path / "store"),
        tmp_path,
        base_env=install.env,
        command=[str(install.bin / "model-server")],
        cwd=install.outside,
        start_timeout_s=START_TIMEOUT_S,
    )
    try:
        yield server.url
    finally:
        server.stop(STOP_TIMEOUT_S)


def test_model_server_from_the_wheel_predicts(server: str) -> None:
    response = httpx.post(
        f"{server}/predict",
        json={"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]},
        timeout=10.0,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "iris"
    assert body["prediction"] == "setosa"
    live = httpx.get(f"{server}/health/live", timeout=5.0)
    assert live.status_code == 200


def test_status_page_and_docs_from_the_wheel_need_nothing_else(server: str) -> None:
    for path in ("/ui", "/ui/assets/ui.js", "/ui/status", "/docs", "/redoc"):
        response = httpx.get(server + path, timeout=10.0)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:200]}"
    swagger = httpx.get(server + "/docs-assets/swagger-ui-bundle.js", timeout=10.0)
    assert swagger.status_code == 200
    assert len(swagger.content) > 100_000


def test_model_export_without_the_extra_says_what_to_install(install: Install) -> None:
    result = subprocess.run(
        [str(install.bin / "model-export"), "--help"],
        cwd=install.outside,
        env=install.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # The wheel alone is the server's install: scikit-learn and skl2onnx are missing, so even
    # --help ends with the extra to install, not a usage text that a conversion would then break.
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, f"a traceback instead of a message:\n{output}"
    assert "pip install 'onnx-model-server[export]'" in result.stderr, output
