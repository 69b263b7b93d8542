"""POST /predict/batch: many rows, answered in request order, and every way a batch is refused."""

from __future__ import annotations

import pytest

IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
# Two of each species, shuffled, so that an answer out of order shows.
IRIS_ROWS = [
    [6.7, 3.0, 5.2, 2.3],
    [5.1, 3.5, 1.4, 0.2],
    [6.0, 2.7, 4.2, 1.3],
    [7.7, 2.6, 6.9, 2.3],
    [4.9, 3.0, 1.4, 0.2],
    [5.7, 2.8, 4.1, 1.3],
]
DIABETES_ROWS = [
    [59.0, 2.0, 32.1, 101.0, 157.0, 93.2, 38.0, 4.0, 4.8598, 87.0],
    [48.0, 1.0, 21.6, 87.0, 183.0, 103.2, 70.0, 3.0, 3.8918, 69.0],
    [72.0, 2.0, 30.5, 93.0, 156.0, 93.6, 41.0, 4.0, 4.6728, 85.0],
]
PIPELINE_NAMES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")


def close(value: object) -> object:
    """float32 results compared as numbers; a list of probability dicts row by row."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [pytest.approx(row, rel=1e-5, abs=1e-6) for row in value]
    return pytest.approx(value, rel=1e-5, abs=1e-6)


def named(row: list[float]) -> dict[str, float]:
    return dict(zip(IRIS_FEATURES, row, strict=True))


@pytest.mark.parametrize("version", [1, 2])
def test_answers_in_request_order(client, reference, version):
    response = client.post(
        "/predict/batch", json={"model": "iris", "version": version, "instances": IRIS_ROWS}
    )

    assert response.status_code == 200, response.text
    labels, probabilities = reference.iris(IRIS_ROWS, version)
    assert response.json() == {
        "model": "iris",
        "version": version,
        "predictions": labels,
        "probabilities": close(probabilities),
    }


def test_named_and_positional_rows_mix(client, reference):
    instances = [named(row) if i % 2 else row for i, row in enumerate(IRIS_ROWS)]

    response = client.post("/predict/batch", json={"model": "iris", "instances": instances})

    assert response.status_code == 200, response.text
    labels, probabilities = reference.iris(IRIS_ROWS, 2)
    body = response.json()
    assert body["version"] == 2
    assert body["predictions"] == labels
    assert body["probabilities"] == close(probabilities)


def test_one_row_batch(client, reference):
    response = client.post("/predict/batch", json={"model": "iris", "instances": [IRIS_ROWS[0]]})

    assert response.status_code == 200, response.text
    labels, _ = reference.iris(IRIS_ROWS[:1], 2)
    assert response.json()["predictions"] == labels


def test_many_rows(client, reference):
    rows = IRIS_ROWS * 50

    response = client.post("/predict/batch", json={"model": "iris", "instances": rows})

    assert response.status_code == 200, response.text
    labels, probabilities = reference.iris(rows, 2)
    assert response.json()["predictions"] == labels
    assert response.json()["probabilities"] == close(probabilities)


def test_regressor_batch(client, reference):
    response = client.post("/predict/batch", json={"model": "diabetes", "instances": DIABETES_ROWS})

    assert response.status_code == 200, response.text
    assert response.json() == {
        "model": "diabetes",
        "version": 1,
        "predictions": close(reference.diabetes(DIABETES_ROWS)),
    }


def test_pipeline_batch_with_a_string_column(client, reference):
    rows = [
        dict(
            zip(
                PIPELINE_NAMES,
                [*row[:1], "male" if row[1] == 2 else "female", *row[2:]],
                strict=True,
            )
        )
        for row in DIABETES_ROWS
    ]

    response = client.post("/predict/batch", json={"model": "diabetes_pipeline", "instances": rows})

    assert response.status_code == 200, response.text
    assert response.json() == {
        "model": "diabetes_pipeline",
        "version": 1,
        "predictions": close(reference.pipeline(rows)),
    }


def test_model_omitted_with_several_models_is_422(client, problem):
    response = client.post("/predict/batch", json={"instances": IRIS_ROWS})

    problem(response, 422, ["model"])


def test_unknown_model_and_version_are_404(client, problem):
    problem(client.post("/predict/batch", json={"model": "nope", "instances": IRIS_ROWS}), 404)
    problem(
        client.post("/predict/batch", json={"model": "iris", "version": 7, "instances": IRIS_ROWS}),
        404,
    )


def test_empty_batch_is_422(client, problem):
    response = client.post("/predict/batch", json={"model": "iris", "instances": []})

    body = problem(response, 422, ["instances"])
    assert "instances" in body["detail"]


@pytest.mark.parametrize("instances", [None, {"a": [1, 2, 3, 4]}, "rows", 4])
def test_instances_must_be_a_list(client, problem, instances):
    response = client.post("/predict/batch", json={"model": "iris", "instances": instances})

    problem(response, 422, ["instances"])


def test_missing_instances_is_422(client, problem):
    response = client.post("/predict/batch", json={"model": "iris"})

    problem(response, 422, ["instances"])


def test_features_key_is_not_a_batch_key(client, problem):
    response = client.post(
        "/predict/batch", json={"model": "iris", "instances": IRIS_ROWS, "features": IRIS_ROWS[0]}
    )

    problem(response, 422, ["features"])


def test_more_rows_than_max_batch_rows_is_422(serve, demo_store, problem, reference):
    with serve(demo_store, max_batch_rows=3) as client:
        at_limit = client.post("/predict/batch", json={"model": "iris", "instances": IRIS_ROWS[:3]})
        over = client.post("/predict/batch", json={"model": "iris", "instances": IRIS_ROWS[:4]})

    assert at_limit.status_code == 200, at_limit.text
    assert at_limit.json()["predictions"] == reference.iris(IRIS_ROWS[:3], 2)[0]
    body = problem(over, 422, ["instances"])
    assert "3" in body["detail"]
    assert "4" in body["detail"]


def test_one_bad_value_names_its_row_and_feature(client, problem):
    instances = [IRIS_ROWS[0], [5.1, 3.5, "1.4", 0.2], IRIS_ROWS[2]]

    response = client.post("/predict/batch", json={"model": "iris", "instances": instances})

    body = problem(response, 422, ["instances", 1, "petal_length"])
    assert len(body["errors"]) == 1
    assert "petal_length" in body["detail"]


def test_every_bad_value_is_named(client, problem):
    instances = [[True, 3.5, 1.4, 0.2], IRIS_ROWS[1], named([5.1, 3.5, 1.4, None])]

    response = client.post("/predict/batch", json={"model": "iris", "instances": instances})

    problem(response, 422, ["instances", 0, "sepal_length"], ["instances", 2, "petal_width"])


def test_non_finite_value_in_a_batch_is_422(client, problem):
    content = b'{"model": "iris", "instances": [[5.1, 3.5, 1.4, 0.2], [5.1, 3.5, 1.4, NaN]]}'

    response = client.post(
        "/predict/batch", content=content, headers={"content-type": "application/json"}
    )

    problem(response, 422, ["instances", 1, "petal_width"])


def test_row_with_the_wrong_count_names_its_index(client, problem):
    instances = [IRIS_ROWS[0], IRIS_ROWS[1], [5.1, 3.5, 1.4]]

    response = client.post("/predict/batch", json={"model": "iris", "instances": instances})

    body = problem(response, 422, ["instances", 2])
    assert "iris expects 4 features" in body["detail"]
    assert "got 3" in body["detail"]


def test_named_row_with_a_missing_feature_names_its_index(client, problem):
    row = named(IRIS_ROWS[1])
    del row["petal_width"]

    response = client.post(
        "/predict/batch", json={"model": "iris", "instances": [IRIS_ROWS[0], row]}
    )

    body = problem(response, 422, ["instances", 1, "petal_width"])
    expects = "iris expects 4 features: sepal_length, sepal_width, petal_length, petal_width"
    assert "petal_width" in body["detail"].replace(expects, "")


def test_named_row_with_an_unknown_feature_names_its_index(client, problem):
    row = {**named(IRIS_ROWS[1]), "colour": 3.0}

    response = client.post(
        "/predict/batch", json={"model": "iris", "instances": [IRIS_ROWS[0], row]}
    )

    problem(response, 422, ["instances", 1, "colour"])


def test_row_that_is_neither_list_nor_object_names_its_index(client, problem):
    response = client.post(
        "/predict/batch", json={"model": "iris", "instances": [IRIS_ROWS[0], 5.1]}
    )

    problem(response, 422, ["instances", 1])
