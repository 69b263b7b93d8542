"""Models beyond classifiers and regressors, served by the real process: versions that take
missing values (HistGradientBoosting, a SimpleImputer pipeline), a regressor of several targets,
an anomaly detector, a clustering model and a text pipeline, each converted here with skl2onnx.

Expected answers come from scikit-learn itself: predict, predict_proba, decision_function and
transform on the same rows the client sends (float32, NaN where JSON says null).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from live_server import LiveServer, check_problem
from sklearn_models import (
    cancer_with_gaps,
    shop_rows,
    wine_rows,
    write_clusters,
    write_hgb,
    write_imputer,
    write_linnerud,
    write_outliers,
    write_reviews,
    write_shop,
)
from tritonclient.utils import InferenceServerException

ATOL = 1e-5
MODELS: dict[str, Any] = {}


def as_json(row: np.ndarray) -> list[float | None]:
    """A float32 row as a client writes it: NaN as null."""
    return [None if math.isnan(v) else float(v) for v in row.tolist()]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("kinds")
    store = root / "store"
    _, MODELS["hgb"], _ = write_hgb(store / "hgb" / "1")
    _, MODELS["imputer"], _ = write_imputer(store / "imputer" / "1")
    _, MODELS["strict"], _ = write_imputer(store / "strict" / "1", missing_values=False)
    folder, MODELS["linnerud"], x, targets = write_linnerud(store / "linnerud" / "1")
    predictions = MODELS["linnerud"].predict(x[:5]).tolist()
    samples = {
        "instances": x[:5].tolist(),
        "expected": {"predictions": [dict(zip(targets, p, strict=True)) for p in predictions]},
    }
    (folder / "samples.json").write_text(json.dumps(samples))
    _, MODELS["outliers"], _ = write_outliers(store / "outliers" / "1")
    _, MODELS["clusters"], _ = write_clusters(store / "clusters" / "1")
    _, MODELS["reviews"], _ = write_reviews(store / "reviews" / "1")
    _, MODELS["shop"] = write_shop(store / "shop" / "1")
    with LiveServer.start(store, root, ready_path="/v2/health/ready") as live:
        yield live


def batch(server: LiveServer, model: str, rows: list[Any]) -> dict[str, Any]:
    response = httpx.post(
        server.url + "/predict/batch", json={"model": model, "instances": rows}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def predict(server: LiveServer, model: str, features: Any) -> httpx.Response:
    return httpx.post(server.url + "/predict", json={"model": model, "features": features})


# -- missing values ----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["hgb", "imputer"])
def test_rows_with_missing_values_answer_as_the_library(server: LiveServer, model: str) -> None:
    x, _, names = cancer_with_gaps()
    estimator = MODELS[model]
    assert np.isnan(x).any(axis=1).sum() > 300  # most rows hold a gap

    answer = batch(server, model, [as_json(row) for row in x])

    assert answer["predictions"] == estimator.predict(x).tolist()
    got = np.array([[p["0"], p["1"]] for p in answer["probabilities"]])
    np.testing.assert_allclose(got, estimator.predict_proba(x), rtol=0, atol=ATOL)
    row = next(r for r in x if np.isnan(r).any())
    one = predict(server, model, dict(zip(names, as_json(row), strict=True)))
    assert one.status_code == 200, one.text
    assert one.json()["prediction"] == estimator.predict(row[None, :]).tolist()[0]


def test_v2_json_null_and_binary_nan_reach_the_model(server: LiveServer) -> None:
    x, _, _ = cancer_with_gaps()
    rows = x[:40]
    expected = MODELS["hgb"].predict_proba(rows)
    client = triton_http.InferenceServerClient(url=server.url.removeprefix("http://"))
    try:
        tensor = triton_http.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=True)
        result = client.infer("hgb", [tensor])
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=ATOL)
    finally:
        client.close()
    body = {
        "inputs": [
            {
                "name": "input",
                "shape": list(rows.shape),
                "datatype": "FP32",
                "data": [as_json(row) for row in rows],
            }
        ]
    }
    response = httpx.post(server.url + "/v2/models/hgb/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    got = np.array(outputs["probabilities"]["data"]).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, atol=ATOL)


def test_a_model_without_missing_values_refuses_them_on_every_protocol(
    server: LiveServer,
) -> None:
    x, _, names = cancer_with_gaps()
    row = next(r for r in x if np.isnan(r[3]) and not np.isnan(r[:3]).any())
    refused = "model strict does not take missing values"

    problem = check_problem(
        predict(server, "strict", dict(zip(names, as_json(row), strict=True))),
        422,
        ("features", names[3]),
    )
    assert refused in problem["detail"]

    body = {
        "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": as_json(row)}]
    }
    response = httpx.post(server.url + "/v2/models/strict/infer", json=body)
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert f"feature {names[3]!r}" in message and refused in message

    client = triton_http.InferenceServerClient(url=server.url.removeprefix("http://"))
    tensor = triton_http.InferInput("input", [1, 30], "FP32")
    tensor.set_data_from_numpy(row[None, :], binary_data=True)
    try:
        with pytest.raises(InferenceServerException, match=refused):
            client.infer("strict", [tensor])
    finally:
        client.close()

    grpc_client = triton_grpc.InferenceServerClient(url=server.grpc_target)
    tensor = triton_grpc.InferInput("input", [1, 30], "FP32")
    tensor.set_data_from_numpy(row[None, :])
    try:
        with pytest.raises(InferenceServerException) as caught:
            grpc_client.infer("strict", [tensor])
    finally:
        grpc_client.close()
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert refused in caught.value.message() and f"feature {names[3]!r}" in caught.value.message()


def test_infinity_and_omitted_keys_stay_refused_where_missing_values_are_taken(
    server: LiveServer,
) -> None:
    x, _, names = cancer_with_gaps()
    named = dict(zip(names, as_json(x[0]), strict=True))
    del named[names[5]]
    check_problem(predict(server, "hgb", named), 422, ("features", names[5]))
    rows = np.nan_to_num(x[:2], nan=1.0)
    rows[1, 2] = np.inf
    grpc_client = triton_grpc.InferenceServerClient(url=server.grpc_target)
    tensor = triton_grpc.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    try:
        with pytest.raises(InferenceServerException, match="values must be finite numbers"):
            grpc_client.infer("hgb", [tensor])
    finally:
        grpc_client.close()


def test_a_null_string_is_fed_as_the_missing_string(server: LiveServer) -> None:
    import pandas as pd

    rows, _ = shop_rows()
    estimator = MODELS["shop"]
    # The client writes null for each missing value: "" (the training data's missing color) and
    # NaN alike; the library is given the rows as it was trained on them.
    sent = [
        {"color": color or None, "size": None if math.isnan(size) else size} for color, size in rows
    ]
    assert any(row["color"] is None for row in sent) and any(row["size"] is None for row in sent)
    frame = pd.DataFrame(rows, columns=["color", "size"])

    answer = batch(server, "shop", sent)

    assert answer["predictions"] == estimator.predict(frame).tolist()
    got = np.array([[p["0"], p["1"]] for p in answer["probabilities"]])
    np.testing.assert_allclose(got, estimator.predict_proba(frame), atol=ATOL)
    body = {
        "inputs": [
            {"name": "color", "shape": [2, 1], "datatype": "BYTES", "data": [None, "red"]},
            {"name": "size", "shape": [2, 1], "datatype": "FP32", "data": [0.5, None]},
        ]
    }
    response = httpx.post(server.url + "/v2/models/shop/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    reference = pd.DataFrame([["", 0.5], ["red", math.nan]], columns=["color", "size"])
    assert outputs["label"]["data"] == estimator.predict(reference).tolist()


# -- several targets ---------------------------------------------------------------------------


def test_several_targets_answer_each_target(server: LiveServer) -> None:
    from sklearn.datasets import load_linnerud

    data = load_linnerud()
    x = data.data.astype(np.float32)
    targets = list(map(str, data.target_names))
    expected = MODELS["linnerud"].predict(x)

    answer = batch(server, "linnerud", x.tolist())

    assert [list(p) for p in answer["predictions"]] == [targets] * len(x)
    got = np.array([[p[t] for t in targets] for p in answer["predictions"]])
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    one = predict(
        server, "linnerud", dict(zip(map(str, data.feature_names), x[0].tolist(), strict=True))
    )
    assert one.status_code == 200, one.text
    assert set(one.json()) == {"model", "version", "prediction"}
    assert one.json()["prediction"] == pytest.approx(
        dict(zip(targets, expected[0], strict=True)), rel=1e-5
    )
    detail = httpx.get(server.url + "/models/linnerud").json()
    assert detail["targets"] == targets and detail["task"] == "regression"
    assert detail["versions"][0]["targets"] == targets
    assert detail["versions"][0]["samples_checked"] == 5


# -- anomaly detection and clustering ------------------------------------------------------------


def test_an_anomaly_detector_answers_its_decision_and_score(server: LiveServer) -> None:
    x = wine_rows()
    estimator = MODELS["outliers"]
    labels = estimator.predict(x).tolist()
    assert -1 in labels and 1 in labels

    answer = batch(server, "outliers", x.tolist())

    assert set(answer) == {"model", "version", "predictions", "outliers", "scores"}
    assert answer["predictions"] == labels
    assert answer["outliers"] == [label == -1 for label in labels]
    np.testing.assert_allclose(answer["scores"], estimator.decision_function(x), atol=ATOL)
    one = predict(server, "outliers", x[0].tolist()).json()
    assert set(one) == {"model", "version", "prediction", "outlier", "score"}
    assert one["prediction"] == labels[0] and one["outlier"] is (labels[0] == -1)
    versions = httpx.get(server.url + "/models").json()["models"]
    listed = next(m for m in versions if m["name"] == "outliers")["versions"][0]
    assert listed["task"] == "anomaly_detection" and listed["missing_values"] is False


def test_a_clustering_model_answers_its_cluster_and_distances(server: LiveServer) -> None:
    x = wine_rows()
    estimator = MODELS["clusters"]

    answer = batch(server, "clusters", x.tolist())

    assert set(answer) == {"model", "version", "predictions", "distances"}
    assert answer["predictions"] == estimator.predict(x).tolist()
    got = np.array([[d[str(i)] for i in range(3)] for d in answer["distances"]])
    np.testing.assert_allclose(got, estimator.transform(x), rtol=1e-4, atol=1e-4)
    one = predict(server, "clusters", x[7].tolist()).json()
    assert set(one) == {"model", "version", "prediction", "distances"}
    assert one["prediction"] == answer["predictions"][7]
    assert httpx.get(server.url + "/models/clusters").json()["task"] == "clustering"


# -- text --------------------------------------------------------------------------------------


def test_a_text_pipeline_serves_one_string_column(server: LiveServer) -> None:
    estimator = MODELS["reviews"]
    texts = ["a good story", "awful and slow", "nothing the model has seen"]
    expected = estimator.predict_proba(texts)

    by_name = predict(server, "reviews", {"review": texts[0]})
    by_position = predict(server, "reviews", [texts[0]])

    assert by_name.status_code == 200, by_name.text
    assert by_name.json() == by_position.json()
    assert by_name.json()["prediction"] == estimator.predict(texts[:1]).tolist()[0]
    answer = batch(server, "reviews", [[t] for t in texts])
    assert answer["predictions"] == estimator.predict(texts).tolist()
    got = np.array([[p["0"], p["1"]] for p in answer["probabilities"]])
    np.testing.assert_allclose(got, expected, atol=ATOL)
    check_problem(predict(server, "reviews", {"review": 3}), 422, ("features", "review"))
