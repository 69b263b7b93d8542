"""model-rollout: model.toml rewritten atomically, comments kept, checked like the server does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from onnx_factories import write_iris_classifier

from ml.cli.rollout import main
from ml.config import read_model_config

ORIGINAL = """# iris: owned by the fraud team
version_policy = "latest:2"  # keep two

[batching]
max_batch_size = 32
"""


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    for version in (1, 2, 3):
        write_iris_classifier(root / "iris" / str(version))
    (root / "iris" / "model.toml").write_text(ORIGINAL)
    return root


def rollout(store: Path, *args: str) -> int:
    return main(["--store", str(store), *args])


def test_start_set_promote(store: Path) -> None:
    path = store / "iris" / "model.toml"
    assert rollout(store, "start", "iris", "3", "--shadow", "100") == 0
    config = read_model_config(store / "iris")
    assert config.rollout is not None
    assert (config.rollout.candidate, config.rollout.shadow_percent) == (3, 100)
    assert config.batching is not None and config.batching.max_batch_size == 32
    assert path.read_text().startswith(ORIGINAL)  # comments and layout kept
    assert rollout(store, "set", "iris", "--traffic", "10", "--sticky-header", "X-User") == 0
    config = read_model_config(store / "iris")
    assert config.rollout is not None
    assert (config.rollout.traffic_percent, config.rollout.sticky_header) == (10, "X-User")
    assert rollout(store, "promote", "iris") == 0
    config = read_model_config(store / "iris")
    assert (config.default_version, config.rollout) == (3, None)
    assert "# keep two" in path.read_text()
    assert [p.name for p in (store / "iris").iterdir() if p.name.startswith(".")] == []


def test_rollback_removes_the_rollout_only(store: Path) -> None:
    assert rollout(store, "start", "iris", "3", "--traffic", "5") == 0
    assert rollout(store, "rollback", "iris") == 0
    # tomlkit leaves the blank line that separated the removed table
    assert (store / "iris" / "model.toml").read_text().rstrip("\n") == ORIGINAL.rstrip("\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["start", "iris", "7"], "holds no model.onnx"),
        (["start", "iris", "3", "--traffic", "150"], "rollout.traffic_percent"),
        (["set", "iris", "--traffic", "5"], "has no [rollout]"),
        (["promote", "iris"], "has no [rollout]"),
        (["start", "nope", "3"], "is not a model folder"),
        (["start", "../x", "3"], "is not a model name"),
    ],
)
def test_refused_commands_write_nothing(
    store: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rollout(store, *args) == 1
    assert message in capsys.readouterr().err
    assert (store / "iris" / "model.toml").read_text() == ORIGINAL


def test_installed_command(store: Path) -> None:
    script = Path(sys.executable).with_name("model-rollout")
    done = subprocess.run(
        [str(script), "start", "iris", "2", "--shadow", "50"],
        env={"MODEL_STORE": str(store), "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "candidate 2" in done.stdout
