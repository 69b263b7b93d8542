"""POST /predict: one row, answered as onnxruntime answers it, and every way a row is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
IRIS_NAMED = dict(zip(IRIS_FEATURES, IRIS_ROW, strict=True))
VIRGINICA_ROW = [6.7, 3.0, 5.2, 2.3]
DIABETES_ROW = [59.0, 2.0, 32.1, 101.0, 157.0, 93.2, 38.0, 4.0, 4.8598, 87.0]
PIPELINE_NAMED = {
    "age": 59.0,
    "sex": "male",
    "bmi": 32.1,
    "bp": 101.0,
    "s1": 157.0,
    "s2": 93.2,
    "s3": 38.0,
    "s4": 4.0,
    "s5": 4.8598,
    "s6": 87.0,
}
EXPECTS_IRIS = "iris expects 4 features: sepal_length, sepal_width, petal_length, petal_width"
JSON = {"content-type": "application/json"}


def close(value: object) -> object:
    return pytest.approx(value, rel=1e-5, abs=1e-6)


# -- answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("row", [IRIS_ROW, VIRGINICA_ROW, [6.0, 2.7, 4.2, 1.3]])
@pytest.mark.parametrize("version", [1, 2])
def test_positional_row_with_version_matches_onnxruntime(client, reference, row, version):
    response = client.post("/predict", json={"model": "iris", "version": version, "features": row})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    labels, probabilities = reference.iris([row], version)
    body = response.json()
    assert body == {
        "model": "iris",
        "version": version,
        "prediction": labels[0],
        "probabilities": close(probabilities[0]),
    }
    assert list(body["probabilities"]) == ["setosa", "versicolor", "virginica"]


def test_named_row_matches_onnxruntime(client, reference):
    # Keys in another order than the model's: the names decide, not the order.
    named = {name: IRIS_NAMED[name] for name in reversed(IRIS_FEATURES)}

    response = client.post("/predict", json={"model": "iris", "version": 1, "features": named})

    assert response.status_code == 200, response.text
    labels, probabilities = reference.iris([IRIS_ROW], 1)
    assert response.json() == {
        "model": "iris",
        "version": 1,
        "prediction": labels[0],
        "probabilities": close(probabilities[0]),
    }


def test_version_omitted_is_served_by_the_highest(client, reference):
    response = client.post("/predict", json={"model": "iris", "features": VIRGINICA_ROW})

    assert response.status_code == 200, response.text
    labels, probabilities = reference.iris([VIRGINICA_ROW], 2)
    body = response.json()
    assert body["version"] == 2
    assert body["prediction"] == labels[0] == "virginica"
    assert body["probabilities"] == close(probabilities[0])


def test_integers_are_numbers(client, reference):
    response = client.post("/predict", json={"model": "iris", "features": [5, 3, 1, 0]})

    assert response.status_code == 200, response.text
    labels, probabilities = reference.iris([[5, 3, 1, 0]], 2)
    assert response.json()["prediction"] == labels[0]
    assert response.json()["probabilities"] == close(probabilities[0])


def test_regressor_answers_its_value(client, reference):
    response = client.post("/predict", json={"model": "diabetes", "features": DIABETES_ROW})

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"model", "version", "prediction"}
    assert body["model"] == "diabetes"
    assert body["version"] == 1
    assert isinstance(body["prediction"], float)
    assert body["prediction"] == close(reference.diabetes([DIABETES_ROW])[0])


@pytest.mark.parametrize("sex", ["male", "female"])
def test_pipeline_with_a_string_column(client, reference, sex):
    named = {**PIPELINE_NAMED, "sex": sex}

    response = client.post("/predict", json={"model": "diabetes_pipeline", "features": named})

    assert response.status_code == 200, response.text
    assert response.json() == {
        "model": "diabetes_pipeline",
        "version": 1,
        "prediction": close(reference.pipeline([named])[0]),
    }


def test_pipeline_positional_row(client, reference):
    row = list(PIPELINE_NAMED.values())

    response = client.post("/predict", json={"model": "diabetes_pipeline", "features": row})

    assert response.status_code == 200, response.text
    assert response.json()["prediction"] == close(reference.pipeline([PIPELINE_NAMED])[0])


def test_charset_parameter_is_still_json(client):
    response = client.post(
        "/predict",
        content=b'{"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]}',
        headers={"content-type": "application/json; charset=utf-8"},
    )

    assert response.status_code == 200, response.text


def _write_raw_model(version_dir: Path, batch: int | None) -> None:
    """x [batch, 3] float -> y = 2x: neither a classifier nor a regressor."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])], "raw", [x], [y], [two]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    version_dir.mkdir(parents=True)
    onnx.save(model, version_dir / "model.onnx")


@pytest.mark.parametrize("batch", [None, 1])
def test_other_models_answer_outputs_by_name(serve, tmp_path, batch):
    store = tmp_path / "store"
    _write_raw_model(store / "raw" / "1", batch)

    with serve(store) as client:
        one = client.post("/predict", json={"features": [1.0, 2.0, 3.5]})
        many = client.post("/predict/batch", json={"instances": [[1, 2, 3], [4, 5, 6], [0, 0, 1]]})

    assert one.status_code == 200, one.text
    assert one.json() == {"model": "raw", "version": 1, "outputs": {"y": [2.0, 4.0, 7.0]}}
    assert many.status_code == 200, many.text
    expected = (np.array([[1, 2, 3], [4, 5, 6], [0, 0, 1]], dtype=np.float32) * 2).tolist()
    assert many.json() == {"model": "raw", "version": 1, "outputs": {"y": expected}}


# -- which model serves ------------------------------------------------------------------------


def test_unknown_model_is_404(client, problem):
    response = client.post("/predict", json={"model": "nope", "features": IRIS_ROW})

    body = problem(response, 404)
    assert "nope" in body["detail"]


@pytest.mark.parametrize("version", [3, 99])
def test_unknown_version_is_404(client, problem, version):
    response = client.post(
        "/predict", json={"model": "iris", "version": version, "features": IRIS_ROW}
    )

    body = problem(response, 404)
    assert str(version) in body["detail"]


def test_model_omitted_with_several_models_is_422(client, problem):
    response = client.post("/predict", json={"features": IRIS_ROW})

    body = problem(response, 422, ["model"])
    assert "iris" in body["detail"]


def test_model_omitted_with_default_model(serve, demo_store, reference):
    with serve(demo_store, default_model="diabetes") as client:
        implicit = client.post("/predict", json={"features": DIABETES_ROW})
        explicit = client.post("/predict", json={"model": "iris", "features": IRIS_ROW})

    assert implicit.status_code == 200, implicit.text
    assert implicit.json() == {
        "model": "diabetes",
        "version": 1,
        "prediction": close(reference.diabetes([DIABETES_ROW])[0]),
    }
    assert explicit.status_code == 200, explicit.text
    assert explicit.json()["model"] == "iris"


def test_default_model_that_is_not_in_the_store_is_404(serve, demo_store, problem):
    with serve(demo_store, default_model="nope") as client:
        response = client.post("/predict", json={"features": IRIS_ROW})

    problem(response, 404)


def test_model_omitted_with_a_one_model_store(serve, tmp_path, reference):
    store = tmp_path / "store"
    store.mkdir()
    shutil.copytree(reference.store / "iris", store / "iris")

    with serve(store) as client:
        response = client.post("/predict", json={"features": VIRGINICA_ROW})

    assert response.status_code == 200, response.text
    labels, probabilities = reference.iris([VIRGINICA_ROW], 2)
    assert response.json() == {
        "model": "iris",
        "version": 2,
        "prediction": labels[0],
        "probabilities": close(probabilities[0]),
    }


# -- strictness: the request object -------------------------------------------------------------


def test_unknown_top_level_key_is_422(client, problem):
    response = client.post(
        "/predict", json={"model": "iris", "features": IRIS_ROW, "feature": IRIS_ROW}
    )

    body = problem(response, 422, ["feature"])
    assert "feature" in body["detail"]


def test_missing_features_is_422(client, problem):
    response = client.post("/predict", json={"model": "iris"})

    body = problem(response, 422, ["features"])
    assert "features" in body["detail"]


@pytest.mark.parametrize("version", ["2", True, 0, -1, 2.5])
def test_version_must_be_a_positive_integer(client, problem, version):
    response = client.post(
        "/predict", json={"model": "iris", "version": version, "features": IRIS_ROW}
    )

    body = problem(response, 422, ["version"])
    assert "version" in body["detail"]


@pytest.mark.parametrize("name", ["../etc", "Iris", "", "iris/1", "-iris", "a" * 65, 7])
def test_model_name_must_match_the_pattern(client, problem, name):
    response = client.post("/predict", json={"model": name, "features": IRIS_ROW})

    body = problem(response, 422, ["model"])
    assert "model" in body["detail"]


# -- strictness: the row -------------------------------------------------------------------------


@pytest.mark.parametrize("row", [IRIS_ROW[:3], [*IRIS_ROW, 1.0], [], [IRIS_ROW]])
def test_wrong_feature_count_is_422(client, problem, row):
    response = client.post("/predict", json={"model": "iris", "features": row})

    body = problem(response, 422, ["features"])
    assert body["detail"] == f"{EXPECTS_IRIS}; got {len(row)}"


def test_wrong_feature_count_names_what_iris_expects(client, problem):
    response = client.post("/predict", json={"model": "iris", "features": [5.1, 3.5, 1.4]})

    body = problem(response, 422, ["features"])
    assert EXPECTS_IRIS + "; got 3" in body["detail"]


def test_named_row_with_a_missing_feature_is_422(client, problem):
    row = {k: v for k, v in IRIS_NAMED.items() if k != "petal_width"}

    response = client.post("/predict", json={"model": "iris", "features": row})

    body = problem(response, 422, ["features", "petal_width"])
    assert len(body["errors"]) == 1
    assert EXPECTS_IRIS in body["detail"]
    # The message itself names the missing field, besides listing what iris expects.
    assert "petal_width" in body["detail"].replace(EXPECTS_IRIS, "")


def test_named_row_with_an_unknown_feature_is_422(client, problem):
    row = {**IRIS_NAMED, "petal_colour": 1.0}

    response = client.post("/predict", json={"model": "iris", "features": row})

    body = problem(response, 422, ["features", "petal_colour"])
    assert len(body["errors"]) == 1
    assert EXPECTS_IRIS in body["detail"]
    assert "petal_colour" in body["detail"]


def test_named_row_with_a_misspelt_feature_names_both(client, problem):
    row = {k: v for k, v in IRIS_NAMED.items() if k != "petal_width"} | {"petal_widht": 0.2}

    response = client.post("/predict", json={"model": "iris", "features": row})

    problem(response, 422, ["features", "petal_width"], ["features", "petal_widht"])


@pytest.mark.parametrize(
    "value", ["1.4", True, False, None, [1.4], {"cm": 1.4}], ids=lambda v: repr(v)
)
def test_non_number_where_a_number_belongs_is_422(client, problem, value):
    positional = client.post("/predict", json={"model": "iris", "features": [5.1, 3.5, value, 0.2]})
    named = client.post(
        "/predict", json={"model": "iris", "features": {**IRIS_NAMED, "petal_length": value}}
    )

    for response in (positional, named):
        body = problem(response, 422, ["features", "petal_length"])
        assert "petal_length" in body["detail"]
        assert "number" in body["errors"][0]["msg"]


def test_number_where_a_string_belongs_is_422(client, problem):
    row = {**PIPELINE_NAMED, "sex": 1}

    response = client.post("/predict", json={"model": "diabetes_pipeline", "features": row})

    body = problem(response, 422, ["features", "sex"])
    assert "string" in body["errors"][0]["msg"]


def test_string_in_a_pipeline_number_column_is_422(client, problem):
    row = {**PIPELINE_NAMED, "age": "59"}

    response = client.post("/predict", json={"model": "diabetes_pipeline", "features": row})

    problem(response, 422, ["features", "age"])


@pytest.mark.parametrize("features", [None, "5.1,3.5,1.4,0.2", 5.1, True])
def test_row_that_is_neither_list_nor_object_is_422(client, problem, features):
    response = client.post("/predict", json={"model": "iris", "features": features})

    problem(response, 422, ["features"])


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_non_finite_numbers_are_422(client, problem, token):
    positional = b'{"model": "iris", "features": [%s, 3.5, 1.4, 0.2]}' % token.encode()
    named = (
        b'{"model": "iris", "features": {"sepal_length": 5.1, "sepal_width": %s, '
        b'"petal_length": 1.4, "petal_width": 0.2}}' % token.encode()
    )

    first = client.post("/predict", content=positional, headers=JSON)
    second = client.post("/predict", content=named, headers=JSON)

    problem(first, 422, ["features", "sepal_length"])
    problem(second, 422, ["features", "sepal_width"])


@pytest.mark.parametrize("token", ["1e39", "-1e39", "3.5e38"])
def test_numbers_beyond_the_float32_range_are_422(client, problem, token):
    """iris takes float32: these finite JSON numbers would reach the model as +-Infinity."""
    content = b'{"model": "iris", "features": [5.1, 3.5, 1.4, %s]}' % token.encode()

    response = client.post("/predict", content=content, headers=JSON)

    problem(response, 422, ["features", "petal_width"])


def test_largest_float32_is_served(client):
    content = b'{"model": "iris", "features": [5.1, 3.5, 1.4, 3.4e38]}'

    response = client.post("/predict", content=content, headers=JSON)

    assert response.status_code == 200, response.text


def test_get_on_predict_is_405(client, problem):
    response = client.get("/predict")

    problem(response, 405)
