"""Drift: the profile written at export, binning, PSI, windows and the counter, in process."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from drift_support import CITIES, NUMERIC, export_classifier, export_regressor, frame

from ml.config import ModelConfig
from ml.drift.counter import Layout
from ml.drift.profile import ProfileError, parse_profile, read_profile
from ml.drift.psi import psi, threshold_for
from ml.drift.windows import WindowRule, advance, new_state
from ml.export.errors import ExportError
from ml.export.profile import build_profile
from ml.model import ModelLoadError, load_model


def plain_psi(reference_shares: list[float], reference_rows: int, counts: np.ndarray) -> float:
    """PSI written out: half a row added to every bin on both sides."""
    k = len(counts)
    p = (np.asarray(reference_shares) * reference_rows + 0.5) / (reference_rows + 0.5 * k)
    q = (counts + 0.5) / (counts.sum() + 0.5 * k)
    return float(np.sum((q - p) * np.log(q / p)))


def plain_bins(entry: dict, values: np.ndarray) -> np.ndarray:
    """Bins by np.digitize (numbers) or a dict (strings): independent of the server's code."""
    if entry["kind"] == "numeric":
        values = values.astype(float)
        found = np.digitize(values, entry["edges"], right=False)
        found[np.isnan(values)] = len(entry["edges"]) + 1
        return found
    position = {v: i for i, v in enumerate(entry["values"])}
    other = len(entry["values"])
    return np.array([other + 1 if v is None else position.get(v, other) for v in values.tolist()])


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return frame(4000, seed=1)


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory, reference: pd.DataFrame) -> Path:
    return export_classifier(tmp_path_factory.mktemp("store"), reference)


@pytest.fixture(scope="module")
def regressor_dir(tmp_path_factory: pytest.TempPathFactory, reference: pd.DataFrame) -> Path:
    return export_regressor(tmp_path_factory.mktemp("store"), reference)


def profile_json(version_dir: Path) -> dict:
    return json.loads((version_dir / "profile.json").read_text())


def test_numeric_features_are_binned_by_deciles_of_half_the_reference(
    regressor_dir: Path, reference: pd.DataFrame
) -> None:
    profile = profile_json(regressor_dir)
    assert profile["rows"] == profile["held_out_rows"] == 2000
    by_name = {f["name"]: f for f in profile["features"]}
    load = by_name["load"]
    assert len(load["edges"]) == 9 and load["edges"] == sorted(load["edges"])
    assert np.allclose(load["shares"][:-1], 0.1, atol=0.001)  # deciles of the rows they split
    assert load["shares"][-1] == 0.0 and load["missing_rate"] == 0.0
    values = reference["load"].to_numpy(np.float32)
    assert load["min"] == pytest.approx(values.min()) and load["max"] == pytest.approx(values.max())
    # `floors` holds three values: the deciles collapse onto them, one bin each.
    assert by_name["floors"]["edges"] == [1.0, 2.0, 3.0]
    assert by_name["floors"]["shares"][0] == 0.0
    assert by_name["floors"]["shares"][1:4] == pytest.approx([0.5, 0.3, 0.2], abs=0.03)
    # `idle` is zero for 60%: the first deciles collapse onto 0, whose bin holds them all.
    idle = by_name["idle"]
    assert idle["edges"][0] == 0.0
    assert idle["shares"][1] == pytest.approx(
        0.6 + 0.4 * (1 - np.exp(-idle["edges"][1] / 3)), abs=0.03
    )
    for feature in profile["features"]:
        assert sum(feature["shares"]) == pytest.approx(1.0)
        assert feature["thresholds"] == sorted(feature["thresholds"], reverse=True)


def test_regressor_answers_are_profiled_by_deciles(regressor_dir: Path) -> None:
    answers = profile_json(regressor_dir)["answers"]
    assert answers["kind"] == "numeric" and len(answers["edges"]) == 9
    assert np.allclose(answers["shares"][:-1], 0.1, atol=0.02)


def test_string_columns_and_classes_are_profiled_by_value(classifier_dir: Path) -> None:
    profile = profile_json(classifier_dir)
    city = next(f for f in profile["features"] if f["name"] == "city")
    assert city["kind"] == "categorical" and city["complete"] is True
    assert city["values"][:2] == ["oslo", "lima"]  # most frequent first
    assert sorted(city["values"]) == sorted(CITIES)
    assert city["shares"][-2:] == [0.0, 0.0]  # other, missing
    answers = profile["answers"]
    assert answers["kind"] == "categorical" and sorted(answers["values"]) == ["leaves", "stays"]
    assert sum(answers["shares"]) == pytest.approx(1.0)


def test_top_values_stop_at_fifty_and_missing_values_have_their_own_bin() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    words = np.array([f"w{i}" for i in rng.integers(0, 80, n)], dtype=object)
    words[:300] = None
    numbers = rng.normal(size=n)
    numbers[:450] = np.nan
    feed = {"words": words.reshape(-1, 1), "numbers": numbers.reshape(-1, 1)}
    profile = build_profile(
        feed, ["words", "numbers"], [numbers], per_column=True, classes=None, labels=None
    )
    assert profile is not None
    words_entry, numbers_entry = profile["features"]
    assert len(words_entry["values"]) == 50 and words_entry["complete"] is False
    assert words_entry["missing_rate"] == pytest.approx(0.1)
    assert words_entry["shares"][-1] == pytest.approx(0.1, abs=0.02)
    assert numbers_entry["missing_rate"] == pytest.approx(0.15)
    assert numbers_entry["shares"][-1] == pytest.approx(0.15, abs=0.02)
    parsed = parse_profile(profile, ["words", "numbers"])
    for entry, binning, column in zip(
        profile["features"], parsed.features, (words, numbers), strict=True
    ):
        assert np.array_equal(binning.bins(column), plain_bins(entry, column))


def test_too_few_rows_make_no_profile() -> None:
    feed = {"input": np.zeros((499, 2))}
    assert (
        build_profile(
            feed, ["a", "b"], [], per_column=False, classes=None, labels=None, min_rows=500
        )
        is None
    )


def test_export_without_reference_profiles_a_large_sample_or_says_why_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from sklearn.linear_model import LinearRegression

    data = frame(600, seed=5)[NUMERIC].to_numpy()
    model = LinearRegression().fit(data, data[:, 0])
    large = export_regressor_plain(model, tmp_path, data)
    assert (large / "profile.json").is_file()
    with caplog.at_level(logging.WARNING, logger="ml.export.api"):
        small = export_regressor_plain(model, tmp_path, data[:100])
    assert not (small / "profile.json").exists()
    assert any("no profile.json" in r.getMessage() for r in caplog.records)
    with pytest.raises(ExportError, match="reference"):
        export_regressor_plain(model, tmp_path, data[:100], reference=data[:150])


def export_regressor_plain(model: object, store: Path, sample: np.ndarray, **kw: object) -> Path:
    from ml.export.api import export_model

    return export_model(model, store, "plain", sample, feature_names=NUMERIC, **kw)


def test_binning_matches_digitize_and_psi_matches_the_formula(
    regressor_dir: Path, classifier_dir: Path
) -> None:
    rows = frame(1500, seed=9, load_shift_sd=0.5)
    for version_dir in (regressor_dir, classifier_dir):
        data = profile_json(version_dir)
        profile = parse_profile(data, [f["name"] for f in data["features"]])
        for entry, binning in zip(data["features"], profile.features, strict=True):
            column = rows[entry["name"]].to_numpy()
            if entry["kind"] == "numeric":
                column = column.astype(np.float32)
            counts = np.bincount(plain_bins(entry, column), minlength=len(entry["shares"]))
            assert np.array_equal(np.bincount(binning.bins(column), minlength=binning.size), counts)
            assert psi(binning.shares, profile.rows, counts) == pytest.approx(
                plain_psi(entry["shares"], data["rows"], counts), abs=1e-12
            )


def test_a_shift_of_half_a_deviation_crosses_the_threshold(regressor_dir: Path) -> None:
    data = profile_json(regressor_dir)
    profile = parse_profile(data, NUMERIC)
    moved = frame(1000, seed=11, load_shift_sd=0.5)
    still = frame(1000, seed=12)
    load = profile.features[0]
    threshold = threshold_for(1000, profile.window_sizes, load.thresholds)
    for rows, expected in ((moved, True), (still, False)):
        counts = np.bincount(load.bins(rows["load"].to_numpy(np.float32)), minlength=load.size)
        assert (psi(load.shares, profile.rows, counts) > threshold) is expected


def test_thresholds_between_calibrated_sizes_follow_one_over_rows() -> None:
    sizes, thresholds = (100, 1000), (0.2, 0.02)
    assert threshold_for(100, sizes, thresholds) == pytest.approx(0.2)
    assert threshold_for(1000, sizes, thresholds) == pytest.approx(0.02)
    assert threshold_for(50, sizes, thresholds) == pytest.approx(0.4)
    assert threshold_for(5000, sizes, thresholds) == pytest.approx(0.02)
    # halfway in 1/rows between 1/100 and 1/1000
    assert threshold_for(round(1 / 0.0055), sizes, thresholds) == pytest.approx(0.11, rel=1e-3)


def loaded(version_dir: Path):
    return load_model(version_dir.parent.name, int(version_dir.name), version_dir, ModelConfig())


def test_the_counter_cuts_windows_exactly_and_counts_like_numpy(classifier_dir: Path) -> None:
    model = loaded(classifier_dir)
    counter = model.drift
    assert counter is not None
    rows = frame(700, seed=21)
    batches = [rows.iloc[i : i + 64] for i in range(0, 700, 64)]
    for batch in batches:
        records = batch[[*NUMERIC, "city"]].to_dict(orient="records")
        arrays = model.codec.encode(records, ("instances",))
        outputs, _ = model._timed_run(arrays, len(records))
        counter.add(arrays, outputs, len(records))
    marks = counter.absorb(counter.take(), every=300, open_rows=100)
    layout = Layout.of(counter.profile)
    assert [int(m[layout.rows]) for m in marks] == [200, 500]
    assert int(counter.total[layout.rows]) == 700
    data = profile_json(classifier_dir)
    window = rows.iloc[200:500]
    for index, entry in enumerate(data["features"]):
        column = window[entry["name"]].to_numpy()
        if entry["kind"] == "numeric":
            column = column.astype(np.float32)
        expected = np.bincount(plain_bins(entry, column), minlength=len(entry["shares"]))
        got = layout.feature_bins(marks[1] - marks[0], index, counter.profile.features[index])
        assert np.array_equal(got, expected), entry["name"]
    answers = np.asarray(marks[1] - marks[0])[layout.answers : layout.answers + 4]
    assert answers[:2].sum() == 300 and answers[2:].sum() == 0  # two classes; no other, missing


def test_windows_close_at_rows_or_after_time_with_enough_rows(regressor_dir: Path) -> None:
    model = loaded(regressor_dir)
    counter = model.drift
    assert counter is not None
    rule = WindowRule(rows=1000, seconds=60, min_rows=100)
    state = new_state(0.0)
    rows = frame(150, seed=4)[NUMERIC].to_numpy(np.float32)
    counter.add({"input": rows[:50]}, [np.zeros((50, 1))], 50)
    marks = counter.absorb(counter.take(), rule.rows, state["open_rows"])
    assert advance(state, counter.profile, {counter.serial: counter.total}, marks, rule, 61) == []
    assert state["open_rows"] == 50  # too few rows to close on time
    counter.add({"input": rows[50:]}, [np.zeros((100, 1))], 100)
    marks = counter.absorb(counter.take(), rule.rows, state["open_rows"])
    (report,) = advance(state, counter.profile, {counter.serial: counter.total}, marks, rule, 62)
    assert report["rows"] == 150 and report["window"] == 1 and state["open_rows"] == 0
    assert {f["name"] for f in report["features"]} == set(NUMERIC)
    assert report["answers"]["name"] == "answers"


def test_a_profile_that_does_not_fit_the_version_keeps_it_out(
    regressor_dir: Path, tmp_path: Path
) -> None:
    import shutil

    copy = Path(shutil.copytree(regressor_dir, tmp_path / "usage" / "1"))
    data = profile_json(copy)
    data["features"] = data["features"][:2]
    (copy / "profile.json").write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match=r"profile\.json: profiles the features"):
        loaded(copy)
    (copy / "profile.json").write_text("{")
    with pytest.raises(ModelLoadError, match=r"profile\.json: not valid JSON"):
        loaded(copy)
    (copy / "profile.json").unlink()
    assert loaded(copy).drift is None
    with pytest.raises(ProfileError, match="format"):
        parse_profile({"format": 2}, NUMERIC)
    assert read_profile(tmp_path, NUMERIC) is None


def test_model_export_takes_a_reference_csv(tmp_path: Path) -> None:
    import joblib
    from sklearn.linear_model import LinearRegression

    from ml.cli.export import main

    data = frame(400, seed=8)[NUMERIC]
    joblib.dump(LinearRegression().fit(data.to_numpy(), data["load"]), tmp_path / "m.joblib")
    data.iloc[:40].to_csv(tmp_path / "sample.csv", index=False)
    data[list(reversed(NUMERIC))].to_csv(tmp_path / "train.csv", index=False)  # any order
    argv = ["--name", "cli", "--store", str(tmp_path / "store"), "--sample"]
    assert main([str(tmp_path / "m.joblib"), *argv, str(tmp_path / "sample.csv"),
                 "--reference", str(tmp_path / "train.csv")]) == 0  # fmt: skip
    profile = profile_json(tmp_path / "store" / "cli" / "1")
    assert [f["name"] for f in profile["features"]] == NUMERIC
    load = profile["features"][0]
    assert load["min"] == pytest.approx(data["load"].min(), rel=1e-6)


def test_values_outside_the_reference_range_are_counted_as_such(regressor_dir: Path) -> None:
    model = loaded(regressor_dir)
    counter = model.drift
    assert counter is not None
    data = profile_json(regressor_dir)
    low, high = data["features"][0]["min"], data["features"][0]["max"]
    rows = frame(400, seed=14)[NUMERIC].to_numpy(np.float32).copy()
    rows[:30, 0] = np.float32(high) * 2  # above the max
    rows[30:40, 0] = np.float32(low) - 1  # below the min
    rows[40:45, 0] = np.float32(high)  # at the max: inside
    counter.add({"input": rows}, [np.zeros((400, 1))], 400)
    rule = WindowRule(rows=400, seconds=60, min_rows=1)
    state = new_state(0.0)
    marks = counter.absorb(counter.take(), rule.rows, 0)
    (report,) = advance(state, counter.profile, {counter.serial: counter.total}, marks, rule, 1)
    load, idle = report["features"][0], report["features"][1]
    expected = np.count_nonzero((rows[:, 0] < low) | (rows[:, 0] > high)) / 400
    assert expected == pytest.approx(40 / 400)
    assert load["out_of_range_share"] == pytest.approx(expected)
    assert idle["out_of_range_share"] == 0.0
    assert load["missing_share"] == 0.0 and load["unseen_share"] is None
    assert load["moved"][0]["bin"].startswith(">= ")  # the last open bin gained most


def test_a_reference_frame_is_read_by_column_name(tmp_path: Path, reference: pd.DataFrame) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    from ml.export.api import export_model

    frame_ = reference.iloc[:600]
    target = np.where(frame_["load"] > 10, "high", "low")
    columns = ColumnTransformer([("city", OneHotEncoder(handle_unknown="ignore"), ["city"])],
                                remainder="passthrough")  # fmt: skip
    model = Pipeline([("columns", columns), ("fit", LogisticRegression(max_iter=300))])
    model.fit(frame_, target)
    shuffled = frame_[list(reversed(frame_.columns))]
    written = export_model(model, tmp_path, "named", frame_.iloc[:20], reference=shuffled)
    names = [f["name"] for f in profile_json(written)["features"]]
    assert names == list(frame_.columns)
    with pytest.raises(ExportError, match="reference: no column 'city'"):
        export_model(model, tmp_path, "named", frame_.iloc[:20], reference=frame_[NUMERIC])
