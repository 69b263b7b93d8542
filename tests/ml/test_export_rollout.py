"""export_model(..., rollout=...) and model-export --rollout: model.toml names the new version
before the version appears, is put back when the version never does, and a rollout the server
would refuse is refused before anything is converted."""

from __future__ import annotations

import os
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_wine
from sklearn.tree import DecisionTreeClassifier

from ml.cli.export import main
from ml.config import read_model_config
from ml.export import ExportError, export_model, writer
from ml.export import api as export
from ml.export.rollout import RolloutSettings

ORIGINAL = "# wine: owned by the cellar team\nversion_policy = 'latest:1'  # one at a time\n"


@pytest.fixture(scope="module")
def wine() -> tuple[np.ndarray, DecisionTreeClassifier]:
    data = load_wine()
    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(data.data, data.target)
    return data.data[:30], model


@pytest.fixture
def store(tmp_path: Path, wine: tuple[np.ndarray, DecisionTreeClassifier]) -> Path:
    rows, model = wine
    root = tmp_path / "store"
    export_model(model, root, "wine", rows)
    (root / "wine" / "model.toml").write_text(ORIGINAL)
    return root


def test_model_toml_names_the_version_before_it_appears(
    store: Path, wine: tuple[np.ndarray, DecisionTreeClassifier], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows, model = wine
    seen_at_rename: list[tuple[bool, str]] = []
    rename = os.rename

    def watched(source: Path, target: Path) -> None:
        seen_at_rename.append((Path(target).exists(), (store / "wine" / "model.toml").read_text()))
        rename(source, target)

    monkeypatch.setattr(writer.os, "rename", watched)
    settings = RolloutSettings(traffic_percent=10, shadow_percent=100, min_agreement=0.9)
    written = export_model(model, store, "wine", rows, rollout=settings)
    assert written == store / "wine" / "2"
    ((existed, text),) = seen_at_rename
    assert not existed
    assert "candidate = 2" in text and "default_version = 1" in text
    config = read_model_config(store / "wine")
    assert config.rollout is not None
    assert (config.default_version, config.rollout.candidate) == (1, 2)
    assert (config.rollout.traffic_percent, config.rollout.shadow_percent) == (10, 100)
    assert config.rollout.min_agreement == 0.9
    assert (store / "wine" / "model.toml").read_text().startswith(ORIGINAL)


@pytest.mark.parametrize("had_model_toml", [True, False])
def test_model_toml_is_put_back_when_the_version_never_appears(
    store: Path,
    wine: tuple[np.ndarray, DecisionTreeClassifier],
    monkeypatch: pytest.MonkeyPatch,
    had_model_toml: bool,
) -> None:
    rows, model = wine
    path = store / "wine" / "model.toml"
    if not had_model_toml:
        path.unlink()

    def refuse(source: Path, target: Path) -> None:
        raise OSError("read-only file system")

    monkeypatch.setattr(writer.os, "rename", refuse)
    with pytest.raises(ExportError, match="read-only"):
        export_model(model, store, "wine", rows, rollout=RolloutSettings(traffic_percent=5))
    assert sorted(p.name for p in (store / "wine").iterdir()) == (
        ["1", "model.toml"] if had_model_toml else ["1"]
    )
    if had_model_toml:
        assert path.read_text() == ORIGINAL


@pytest.mark.parametrize(
    ("settings", "new_model", "message"),
    [
        (
            RolloutSettings(traffic_percent=50, min_agreement=0.95),
            False,
            "min_agreement needs shadow_percent above 0",
        ),
        (RolloutSettings(traffic_percent=101), False, "rollout.traffic_percent"),
        (RolloutSettings(traffic_percent=10), True, "not in the store yet"),
    ],
)
def test_a_refused_rollout_converts_and_writes_nothing(
    store: Path,
    wine: tuple[np.ndarray, DecisionTreeClassifier],
    monkeypatch: pytest.MonkeyPatch,
    settings: RolloutSettings,
    new_model: bool,
    message: str,
) -> None:
    rows, model = wine

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("converted before the rollout was checked")

    monkeypatch.setattr(export, "_convert_and_check", never)
    name = "fresh" if new_model else "wine"
    with pytest.raises(ExportError, match=message):
        export_model(model, store, name, rows, rollout=settings)
    assert sorted(p.name for p in store.iterdir()) == ["wine"]
    assert sorted(p.name for p in (store / "wine").iterdir()) == ["1", "model.toml"]
    assert (store / "wine" / "model.toml").read_text() == ORIGINAL


def cli(tmp_path: Path, store: Path, model: DecisionTreeClassifier, rows: np.ndarray) -> list[str]:
    model_file = tmp_path / "model.joblib"
    joblib.dump(model, model_file)
    sample = tmp_path / "rows.csv"
    pd.DataFrame(rows, columns=[f"f{i}" for i in range(rows.shape[1])]).to_csv(sample, index=False)
    return [str(model_file), "--name", "wine", "--sample", str(sample), "--store", str(store)]


def test_cli_ships_into_a_rollout(
    tmp_path: Path,
    store: Path,
    wine: tuple[np.ndarray, DecisionTreeClassifier],
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows, model = wine
    args = cli(tmp_path, store, model, rows)
    options = ["--rollout", "0", "--shadow", "100", "--sticky-header", "X-Cellar", "--window", "50"]
    assert main([*args, *options]) == 0
    assert capsys.readouterr().out.strip() == str(store / "wine" / "2")
    rollout = read_model_config(store / "wine").rollout
    assert rollout is not None
    assert (rollout.candidate, rollout.traffic_percent, rollout.shadow_percent) == (2, 0, 100)
    assert (rollout.sticky_header, rollout.window) == ("X-Cellar", 50)


def test_cli_rollout_options_need_rollout(
    tmp_path: Path,
    store: Path,
    wine: tuple[np.ndarray, DecisionTreeClassifier],
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows, model = wine
    assert main([*cli(tmp_path, store, model, rows), "--shadow", "50"]) == 1
    assert "--shadow only apply with --rollout PERCENT" in capsys.readouterr().err
    assert sorted(p.name for p in (store / "wine").iterdir()) == ["1", "model.toml"]
