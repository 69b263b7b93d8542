"""model-rollout: model.toml rewritten atomically, comments kept, checked like the server does."""

from __future__ import annotations

import shutil
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


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_start_set_promote(store: Path) -> None:
    path = store / "iris" / "model.toml"
    assert rollout(store, "start", "iris", "3", "--shadow", "100") == 0
    config = read_model_config(store / "iris")
    assert config.rollout is not None
    assert (config.rollout.candidate, config.rollout.shadow_percent) == (3, 100)
    # The default that served (the highest other than the candidate) is pinned.
    assert config.default_version == 2
    assert config.batching is not None and config.batching.max_batch_size == 32
    assert set(ORIGINAL.splitlines()) <= set(lines(path))  # comments and layout kept
    assert rollout(store, "set", "iris", "--traffic", "10", "--sticky-header", "X-User") == 0
    config = read_model_config(store / "iris")
    assert config.rollout is not None
    assert (config.rollout.traffic_percent, config.rollout.sticky_header) == (10, "X-User")
    assert rollout(store, "promote", "iris") == 0
    config = read_model_config(store / "iris")
    assert (config.default_version, config.rollout) == (3, None)
    assert config.promotion is not None
    assert (config.promotion.version, config.promotion.previous) == (3, 2)
    assert config.promotion.at is not None
    assert "# keep two" in path.read_text()
    assert [p.name for p in (store / "iris").iterdir() if p.name.startswith(".")] == []


def test_rollback_ends_a_rollout_and_leaves_the_default_serving(store: Path) -> None:
    assert rollout(store, "start", "iris", "3", "--traffic", "5") == 0
    assert rollout(store, "rollback", "iris") == 0
    config = read_model_config(store / "iris")
    # 3 is the highest version: unpinned, it would take over as the rollout ends.
    assert (config.rollout, config.default_version, config.promotion) == (None, 2, None)
    assert set(ORIGINAL.splitlines()) <= set(lines(store / "iris" / "model.toml"))


def test_rollback_after_a_promotion_restores_the_previous_default(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rollout(store, "start", "iris", "3") == 0
    assert rollout(store, "promote", "iris") == 0
    assert "version 2 stays loaded" in capsys.readouterr().out
    assert rollout(store, "rollback", "iris") == 0
    config = read_model_config(store / "iris")
    assert (config.default_version, config.promotion, config.rollout) == (2, None, None)
    assert rollout(store, "rollback", "iris") == 1
    assert "nothing to roll back" in capsys.readouterr().err


def test_a_rollout_started_after_a_promotion_is_rolled_back_first(store: Path) -> None:
    assert rollout(store, "start", "iris", "3") == 0
    assert rollout(store, "promote", "iris") == 0
    write_iris_classifier(store / "iris" / "4")
    assert rollout(store, "start", "iris", "4") == 0
    assert read_model_config(store / "iris").default_version == 3
    assert rollout(store, "rollback", "iris") == 0  # ends the rollout of 4
    config = read_model_config(store / "iris")
    assert (config.rollout, config.default_version) == (None, 3)
    assert config.promotion is not None and config.promotion.previous == 2
    assert rollout(store, "rollback", "iris") == 0  # undoes the promotion of 3
    assert read_model_config(store / "iris").default_version == 2


def test_the_next_promotion_replaces_the_last(store: Path) -> None:
    assert rollout(store, "start", "iris", "3") == 0
    assert rollout(store, "promote", "iris") == 0
    assert rollout(store, "start", "iris", "4") == 0
    assert rollout(store, "promote", "iris") == 1  # 4 is not in the store yet
    write_iris_classifier(store / "iris" / "4")
    assert rollout(store, "promote", "iris") == 0
    config = read_model_config(store / "iris")
    assert config.promotion is not None
    assert (config.default_version, config.promotion.version, config.promotion.previous) == (
        4,
        4,
        3,
    )


def test_retire_forgets_the_promotion(store: Path) -> None:
    assert rollout(store, "start", "iris", "3") == 0
    assert rollout(store, "promote", "iris") == 0
    assert rollout(store, "retire", "iris") == 0
    config = read_model_config(store / "iris")
    assert (config.default_version, config.promotion) == (3, None)


def test_start_accepts_a_version_not_in_the_store(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rollout(store, "start", "iris", "7", "--traffic", "10") == 0
    assert "pending until it loads" in capsys.readouterr().out
    config = read_model_config(store / "iris")
    assert config.rollout is not None
    assert (config.rollout.candidate, config.default_version) == (7, 3)


def test_start_over_a_running_rollout_pins_the_default_not_the_old_candidate(
    store: Path,
) -> None:
    (store / "iris" / "model.toml").write_text("[rollout]\ncandidate = 3\n")
    assert rollout(store, "start", "iris", "4") == 0
    config = read_model_config(store / "iris")
    assert config.rollout is not None
    assert (config.rollout.candidate, config.default_version) == (4, 2)


def test_start_keeps_a_pinned_default_and_follows_a_specific_policy(store: Path) -> None:
    (store / "iris" / "model.toml").write_text("default_version = 1\n")
    assert rollout(store, "start", "iris", "3") == 0
    assert read_model_config(store / "iris").default_version == 1
    (store / "iris" / "model.toml").write_text("version_policy = 'specific:1,3'\n")
    assert rollout(store, "start", "iris", "3") == 0
    assert read_model_config(store / "iris").default_version == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["start", "iris", "3", "--traffic", "150"], "rollout.traffic_percent"),
        (
            ["start", "iris", "3", "--traffic", "50", "--min-agreement", "0.95"],
            "min_agreement needs shadow_percent above 0",
        ),
        (
            ["start", "iris", "3", "--max-error-rate", "0.1"],
            "max_error_rate needs traffic_percent or shadow_percent above 0",
        ),
        (["set", "iris", "--traffic", "5"], "has no [rollout]"),
        (["promote", "iris"], "has no [rollout]"),
        (["rollback", "iris"], "nothing to roll back"),
        (["retire", "iris"], "has no [promotion]"),
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


def test_a_rollout_needs_a_default_beside_the_candidate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_iris_classifier(tmp_path / "iris" / "1")
    assert rollout(tmp_path, "start", "iris", "1") == 1
    assert "no version other than 1 to serve by default" in capsys.readouterr().err
    assert not (tmp_path / "iris" / "model.toml").exists()


def test_rollback_refuses_when_the_previous_default_is_gone(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rollout(store, "start", "iris", "3") == 0
    assert rollout(store, "promote", "iris") == 0
    shutil.rmtree(store / "iris" / "2")
    before = (store / "iris" / "model.toml").read_text()
    assert rollout(store, "rollback", "iris") == 1
    assert "no longer in the store" in capsys.readouterr().err
    assert (store / "iris" / "model.toml").read_text() == before


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
