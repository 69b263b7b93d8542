"""The app factory: importing app.main builds nothing; `app.main:app` is built on first use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from live_server import REPO, server_environ

CHECK = """
import app.main as main
assert main._served is None, "importing app.main built an app"
from app.edge import Edge
served = main.app
assert isinstance(served, Edge) and main.app is served
assert served.runtime.settings.model_store.name == "store-of-this-test"
print("ok")
"""


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**server_environ(), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_app_main_app_is_built_on_first_use_from_the_environment(tmp_path: Path):
    done = _python(CHECK, MODEL_STORE=str(tmp_path / "store-of-this-test"))

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_importing_app_main_reads_no_settings():
    """A broken setting fails when an app is built, not when the module is imported."""
    imported = _python("import app.main", PORT="not-a-port")
    built = _python("import app.main; app.main.app", PORT="not-a-port")

    assert imported.returncode == 0, imported.stderr
    assert built.returncode != 0
    assert "port" in built.stderr.lower()
