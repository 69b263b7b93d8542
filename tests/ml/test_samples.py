"""samples.json: a version serves only once it answers its samples as the export saw them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx_factories import (
    columns_rows,
    diabetes_rows,
    iris_rows,
    write_classifier,
    write_columns_pipeline,
    write_iris_classifier,
    write_raw_model,
    write_regressor,
)
from sklearn_models import write_clusters, write_hgb, write_linnerud, write_outliers

from ml.config import ModelConfig
from ml.model import LoadedModel, ModelLoadError, load_model


def load(folder: Path) -> LoadedModel:
    return load_model("m", 1, folder, ModelConfig())


def batch_answer(folder: Path, rows: list[Any]) -> dict[str, Any]:
    """What /predict/batch answers for `rows` (without model and version), from a load of the
    version without samples."""
    model = load(folder)
    result = asyncio.run(model.predict(rows, ("instances",)))
    fields = ("predictions", "probabilities", "outputs")
    return {f: getattr(result, f) for f in fields if getattr(result, f) is not None}


def write_samples(folder: Path, **content: Any) -> None:
    (folder / "samples.json").write_text(json.dumps(content))


def test_without_samples_nothing_is_checked(tmp_path: Path) -> None:
    assert load(write_iris_classifier(tmp_path)).samples_checked == 0


@pytest.mark.parametrize(
    ("writer", "rows"),
    [
        (write_iris_classifier, iris_rows(12)),
        (write_regressor, diabetes_rows(7)),
        (write_columns_pipeline, columns_rows(5)),
        (write_raw_model, [[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]]),
    ],
)
def test_samples_that_match_are_counted(tmp_path: Path, writer: Any, rows: list[Any]) -> None:
    folder = writer(tmp_path)
    write_samples(folder, instances=rows, expected=batch_answer(folder, rows))
    assert load(folder).samples_checked == len(rows)


def test_named_rows_are_samples_too(tmp_path: Path) -> None:
    folder = write_iris_classifier(tmp_path)
    rows: list[Any] = iris_rows(2)
    named = dict(
        zip(("sepal_length", "sepal_width", "petal_length", "petal_width"), rows[1], strict=True)
    )
    write_samples(folder, instances=[rows[0], named], expected=batch_answer(folder, rows))
    assert load(folder).samples_checked == 2


def test_one_class_off_fails_the_version_naming_row_field_and_values(tmp_path: Path) -> None:
    folder = write_iris_classifier(tmp_path)
    rows = iris_rows(150)[::30]
    expected = batch_answer(folder, rows)
    got = expected["predictions"][3]
    expected["predictions"][3] = "setosa" if got != "setosa" else "virginica"
    write_samples(folder, instances=rows, expected=expected)
    with pytest.raises(ModelLoadError) as caught:
        load(folder)
    assert str(caught.value) == (
        f"samples.json row 3: prediction {got!r}, expected {expected['predictions'][3]!r}"
    )


def test_one_probability_beyond_tolerance_fails_the_version(tmp_path: Path) -> None:
    folder = write_iris_classifier(tmp_path)
    rows = iris_rows(4)
    expected = batch_answer(folder, rows)
    got = expected["probabilities"][2]["versicolor"]
    expected["probabilities"][2]["versicolor"] = got + 0.01
    write_samples(folder, instances=rows, expected=expected)
    with pytest.raises(
        ModelLoadError,
        match=rf"^samples\.json row 2: probabilities\.versicolor {got!r}, expected "
        rf"{got + 0.01!r}$",
    ):
        load(folder)


def test_differences_within_the_default_tolerance_pass(tmp_path: Path) -> None:
    folder = write_regressor(tmp_path)
    rows = diabetes_rows(3)
    expected = batch_answer(folder, rows)
    expected["predictions"] = [v * (1 + 5e-5) for v in expected["predictions"]]  # rtol 1e-4
    write_samples(folder, instances=rows, expected=expected)
    assert load(folder).samples_checked == 3


def test_tolerances_given_in_the_file(tmp_path: Path) -> None:
    folder = write_regressor(tmp_path)
    rows = diabetes_rows(3)
    expected = batch_answer(folder, rows)
    expected["predictions"] = [v + 0.5 for v in expected["predictions"]]
    write_samples(folder, instances=rows, expected=expected)
    with pytest.raises(
        ModelLoadError, match=r"^samples\.json row 0: prediction .* \(3 rows differ\)"
    ):
        load(folder)
    write_samples(folder, instances=rows, expected=expected, rtol=0, atol=0.6)
    assert load(folder).samples_checked == 3
    write_samples(folder, instances=rows, expected=expected, rtol=0, atol=0.4)
    with pytest.raises(ModelLoadError, match=r"^samples\.json row 0: prediction"):
        load(folder)


def test_a_raw_output_difference_names_the_output(tmp_path: Path) -> None:
    folder = write_raw_model(tmp_path)
    rows = [[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]]
    expected = batch_answer(folder, rows)
    expected["outputs"]["y"][1][2] = 7.0
    write_samples(folder, instances=rows, expected=expected)
    with pytest.raises(
        ModelLoadError, match=r"^samples\.json row 1: outputs\.y\[2\] -2\.0, expected 7\.0$"
    ):
        load(folder)


def test_another_vocabulary_fails_the_version(tmp_path: Path) -> None:
    # Exported with labels, shipped without: the answers would speak class ids.
    folder = write_classifier(tmp_path, "forest", (0, 1, 2), metadata={"labels": ["a", "b", "c"]})
    rows = iris_rows(3)
    write_samples(folder, instances=rows, expected=batch_answer(folder, rows))
    (folder / "metadata.json").unlink()
    with pytest.raises(ModelLoadError, match=r"^samples\.json row 0: prediction 0, expected 'a'"):
        load(folder)


def test_expecting_what_the_model_does_not_answer(tmp_path: Path) -> None:
    folder = write_regressor(tmp_path)
    write_samples(
        folder,
        instances=diabetes_rows(1),
        expected={"predictions": [1.0], "probabilities": [{"a": 1.0}]},
    )
    with pytest.raises(
        ModelLoadError, match="expected probabilities, but the model answers predictions"
    ):
        load(folder)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"^samples\.json: cannot read"),
        ("[]", r"^samples\.json: must hold a JSON object"),
        ('{"expected": {"predictions": []}}', r"instances must be a non-empty list"),
        ('{"instances": [], "expected": {"predictions": []}}', r"instances must be a non-empty"),
        ('{"instances": [[1, 2, 3, 4]]}', r"expected must be an object with predictions"),
        (
            '{"instances": [[1, 2, 3, 4]], "expected": {"predictions": ["a", "b"]}}',
            r"expected predictions must list one answer per instance \(1\)",
        ),
        (
            '{"instances": [[1, 2, 3, 4]], "expected": {"predictions": ["a"]}, "rtol": -1}',
            r"rtol must be a number >= 0",
        ),
        (
            '{"instances": [[1, 2, 3, 4]], "expected": {"predictions": ["a"]}, "atol": "0"}',
            r"atol must be a number >= 0",
        ),
        (
            '{"instances": [[1, 2, 3, 4]], "expected": {"predictions": ["a"]}, "extra": 1}',
            r"unknown keys extra",
        ),
        (
            '{"instances": [[1, 2, 3, 4]], "expected": {"predictions": ["a"], "labels": []}}',
            r"expected has unknown keys labels",
        ),
        (
            '{"instances": [[1, 2, 3]], "expected": {"predictions": ["a"]}}',
            r"^samples\.json: instances do not fit the model: .*4 features",
        ),
        (
            '{"instances": [["a", 2, 3, 4]], "expected": {"predictions": ["a"]}}',
            r"^samples\.json: instances do not fit the model: .*sepal_length",
        ),
    ],
)
def test_a_malformed_file_fails_the_version(tmp_path: Path, content: str, message: str) -> None:
    folder = write_iris_classifier(tmp_path)
    (folder / "samples.json").write_text(content)
    with pytest.raises(ModelLoadError, match=message):
        load(folder)


def test_samples_are_checked_with_a_fixed_batch_dimension(tmp_path: Path) -> None:
    folder = write_raw_model(tmp_path, batch=1)
    rows = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [0.0, 0.0, 1.0]]
    expected = {"outputs": {"y": [[2 * v for v in r] for r in rows], "s": [[sum(r)] for r in rows]}}
    write_samples(folder, instances=rows, expected=expected)
    assert load(folder).samples_checked == 3


def test_samples_warm_up_a_model_that_refuses_made_up_values(tmp_path: Path) -> None:
    # OneHotEncoder(handle_unknown="error") fails on the empty strings of a made-up warm-up row.
    import pandas as pd
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame(
        {"color": ["red", "green", "blue", "red"] * 5, "size": [1.0, 2.0, 3.0, 4.0] * 5}
    )
    target = [0, 1, 1, 0] * 5
    pipeline = Pipeline(
        [
            (
                "columns",
                ColumnTransformer([("color", OneHotEncoder(), ["color"])], remainder="passthrough"),
            ),
            ("model", LogisticRegression()),
        ]
    ).fit(frame, target)
    onx = convert_sklearn(
        pipeline,
        initial_types=[
            ("color", StringTensorType([None, 1])),
            ("size", FloatTensorType([None, 1])),
        ],
        target_opset={"": 18, "ai.onnx.ml": 3},
        options={id(pipeline): {"zipmap": False}},
    )
    folder = tmp_path / "1"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
    with pytest.raises(ModelLoadError, match="warm-up inference failed"):
        load(folder)
    rows = [{"color": "blue", "size": 3.0}, {"color": "red", "size": 1.0}]
    proba = pipeline.predict_proba(pd.DataFrame(rows))
    write_samples(
        folder,
        instances=rows,
        expected={
            "predictions": pipeline.predict(pd.DataFrame(rows)).tolist(),
            "probabilities": [{"0": p[0], "1": p[1]} for p in proba.tolist()],
        },
    )
    model = load(folder)
    assert model.samples_checked == 2


# -- missing values, several targets, anomaly detection and clustering -------------------------


def rows_with_null(x: Any, count: int) -> list[list[float | None]]:
    """The first `count` rows that hold NaN, as JSON writes them: null for each NaN."""
    chosen = [row for row in x if np.isnan(row).any()][:count]
    return [[None if np.isnan(v) else float(v) for v in row] for row in chosen]


def test_samples_with_null_check_a_version_that_takes_missing_values(tmp_path: Path) -> None:
    folder, estimator, x = write_hgb(tmp_path / "1")
    instances = rows_with_null(x, 12)
    reference = np.array(instances, dtype=np.float64)  # None -> NaN, as the library is fed
    expected = {
        "predictions": estimator.predict(reference).tolist(),
        "probabilities": [
            {"0": p[0], "1": p[1]} for p in estimator.predict_proba(reference).tolist()
        ],
    }
    write_samples(folder, instances=instances, expected=expected)
    assert load(folder).samples_checked == 12
    refusing, _, _ = write_hgb(tmp_path / "2", missing_values=False)
    write_samples(refusing, instances=instances, expected=expected)
    with pytest.raises(ModelLoadError, match="does not take missing values"):
        load(refusing)


def test_samples_check_every_target(tmp_path: Path) -> None:
    folder, estimator, x, targets = write_linnerud(tmp_path / "1")
    predictions = [dict(zip(targets, row, strict=True)) for row in estimator.predict(x).tolist()]
    write_samples(folder, instances=x.tolist(), expected={"predictions": predictions})
    assert load(folder).samples_checked == len(x)
    predictions[3] = {**predictions[3], targets[2]: predictions[3][targets[2]] + 5.0}
    write_samples(folder, instances=x.tolist(), expected={"predictions": predictions})
    with pytest.raises(ModelLoadError, match=f"samples.json row 3: prediction.{targets[2]} "):
        load(folder)


def test_targets_that_do_not_fit_the_output_fail_the_version(tmp_path: Path) -> None:
    folder, _, _, _ = write_linnerud(tmp_path / "1")
    (folder / "metadata.json").write_text(json.dumps({"targets": ["a", "b"]}))
    with pytest.raises(ModelLoadError, match="lists 2 targets but the model's output"):
        load(folder)


def test_samples_of_an_anomaly_detector(tmp_path: Path) -> None:
    folder, estimator, x = write_outliers(tmp_path / "1")
    labels = estimator.predict(x).tolist()
    expected = {
        "predictions": labels,
        "outliers": [label == -1 for label in labels],
        "scores": estimator.decision_function(x).tolist(),
    }
    write_samples(folder, instances=x.tolist(), expected=expected)
    assert load(folder).samples_checked == len(x)
    assert -1 in labels  # the check below flips a real outlier
    row = labels.index(-1)
    expected["outliers"][row] = False
    write_samples(folder, instances=x.tolist(), expected=expected)
    with pytest.raises(
        ModelLoadError, match=f"samples.json row {row}: outlier True, expected False"
    ):
        load(folder)


def test_samples_of_a_clustering_model(tmp_path: Path) -> None:
    folder, estimator, x = write_clusters(tmp_path / "1")
    expected = {
        "predictions": estimator.predict(x).tolist(),
        "distances": [
            {str(i): d for i, d in enumerate(row)} for row in estimator.transform(x).tolist()
        ],
    }
    write_samples(folder, instances=x.tolist(), expected=expected)
    assert load(folder).samples_checked == len(x)
    expected["predictions"][5] = (expected["predictions"][5] + 1) % 3
    write_samples(folder, instances=x.tolist(), expected=expected)
    with pytest.raises(ModelLoadError, match=r"samples\.json row 5: prediction "):
        load(folder)
