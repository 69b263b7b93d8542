"""POST /feedback in process: accuracy and mean absolute error per version equal to the figures
computed from the test's own data, in the rollout report and /metrics; the join on logged
answers; what is ignored (unknown, duplicate) and what is refused (422, 404); and the window
and the adding up of workers' figures (app.feedback.FeedbackBook)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from onnx_factories import (
    IRIS_LABELS,
    diabetes_rows,
    fitted_classifier,
    iris_rows,
    write_classifier,
    write_model_toml,
    write_raw_model,
    write_regressor,
)
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_diabetes, load_iris

from app.feedback import FeedbackBook
from app.metrics import Metrics
from app.predlog.answers import read_outputs
from app.routes.feedback import _joined
from app.schemas import FeedbackItem
from ml.config import ModelConfig
from ml.model import load_model

CLASSES = (3, 7, 9)  # integer classes, no labels: answers give the numbers themselves
VALUES = (10, 20, 30)  # the graph's classes of "petals", named IRIS_LABELS by its metadata.json
WORDS = ("bloom", "bud", "seed")  # string classes, no labels: answered as they are


@pytest.fixture
def store(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    write_classifier(store / "flowers" / "1", "forest", CLASSES)
    write_classifier(store / "flowers" / "2", "naive_bayes", CLASSES)
    write_model_toml(store / "flowers", "[rollout]\ncandidate = 2\ntraffic_percent = 50\n")
    write_regressor(store / "sugar" / "1")
    write_raw_model(store / "raw" / "1")
    write_classifier(
        store / "petals" / "1", "logistic", VALUES, metadata={"labels": list(IRIS_LABELS)}
    )
    write_classifier(store / "words" / "1", "logistic", WORDS)
    return store


def gauges(client: Any, name: str) -> dict[tuple[str, str, str], float]:
    text = client.get("/metrics").text
    return {
        (s.labels["model"], s.labels["version"], s.labels["window"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_accuracy_per_version_equals_the_tests_own_count(serve, store):
    data = load_iris()
    picks = list(range(0, 150, 2))
    with serve(store) as client:
        answers = []
        for index in picks:
            features = [float(v) for v in data.data[index]]
            response = client.post("/predict", json={"model": "flowers", "features": features})
            assert response.status_code == 200, response.text
            answers.append((response.headers["x-request-id"], response.json()))
        actual = {index: CLASSES[data.target[index]] for index in picks}
        items = [
            {"request_id": rid, "actual": actual[index], "version": a["version"],
             "prediction": a["prediction"]}
            for (rid, a), index in zip(answers, picks, strict=True)
        ]  # fmt: skip
        response = client.post("/feedback", json={"model": "flowers", "items": items})
        assert response.status_code == 200, response.text
        body = response.json()
        report = client.get("/models/flowers/rollout").json()
        accuracy = gauges(client, "model_server_feedback_accuracy")
        page = client.get("/ui/status").json()
    assert body["scored"] == len(items) and body["ignored"] == 0
    expected: dict[int, list[int]] = {1: [0, 0], 2: [0, 0]}
    for (_, answer), index in zip(answers, picks, strict=True):
        expected[answer["version"]][0] += 1
        expected[answer["version"]][1] += answer["prediction"] == actual[index]
    assert all(count for count, _ in expected.values()), "both versions answered"
    for version, (count, right) in expected.items():
        figures = report["feedback"][str(version)]
        assert figures["total"]["matched"] == count
        assert figures["total"]["correct"] == right
        assert figures["total"]["accuracy"] == pytest.approx(right / count)
        assert figures["recent"]["accuracy"] == pytest.approx(right / count)
        assert accuracy[("flowers", str(version), "total")] == pytest.approx(right / count)
    (flowers,) = (m for m in page["models"] if m["name"] == "flowers")
    for row in flowers["versions"]:  # the status page shows the same figures
        count, right = expected[row["version"]]
        assert row["feedback"]["total"]["accuracy"] == pytest.approx(right / count)
    assert report["shadow"]["compared"] == 0  # beside agreement, which is its own


def test_mean_absolute_error_of_a_regressor(serve, store):
    rows = diabetes_rows(20)
    truth = load_diabetes().target[:20]
    with serve(store) as client:
        answers = client.post("/predict/batch", json={"model": "sugar", "instances": rows}).json()
        items = [
            {"request_id": f"row-{i}", "actual": float(truth[i]), "version": 1,
             "prediction": answers["predictions"][i]}
            for i in range(20)
        ]  # fmt: skip
        assert client.post("/feedback", json={"model": "sugar", "items": items}).is_success
        error = gauges(client, "model_server_feedback_mean_abs_error")
    expected = sum(abs(p - t) for p, t in zip(answers["predictions"], truth, strict=True)) / 20
    assert error[("sugar", "1", "total")] == pytest.approx(expected)


def test_without_version_and_prediction_the_logged_answer_is_joined(serve, store, tmp_path):
    row = iris_rows(3)[2]
    with serve(store, prediction_log_dir=tmp_path / "log") as client:
        answer = client.post("/predict", json={"model": "flowers", "features": row})
        rid = answer.headers["x-request-id"]
        actual = answer.json()["prediction"]
        body = client.post(
            "/feedback",
            json={"model": "flowers", "items": [
                {"request_id": rid, "actual": actual},
                {"request_id": "never-answered", "actual": actual},
                {"request_id": rid, "actual": actual},
            ]},
        ).json()  # fmt: skip
    outcomes = [(i["version"], i["outcome"]) for i in body["items"]]
    version = answer.json()["version"]
    assert outcomes == [(version, "correct"), (None, "unknown"), (version, "duplicate")]
    assert (body["scored"], body["ignored"]) == (1, 2)


def test_an_open_inference_protocol_answer_is_joined_from_its_outputs(serve, store, tmp_path):
    row = iris_rows(3)[1]
    with serve(store, prediction_log_dir=tmp_path / "log") as client:
        (tensor,) = client.get("/v2/models/flowers").json()["inputs"]
        request = {"name": tensor["name"], "shape": [1, 4], "datatype": "FP32", "data": row}
        answer = client.post("/v2/models/flowers/infer", json={"inputs": [request]})
        assert answer.status_code == 200, answer.text
        version = int(answer.json()["model_version"])
        expected = client.post(
            "/predict", json={"model": "flowers", "version": version, "features": row}
        ).json()
        body = client.post(
            "/feedback",
            json={"model": "flowers", "items": [
                {"request_id": answer.headers["x-request-id"], "actual": expected["prediction"]},
            ]},
        ).json()  # fmt: skip
    assert [(i["version"], i["outcome"]) for i in body["items"]] == [
        (expected["version"], "correct")
    ]


def test_a_class_is_taken_by_its_name_or_by_its_value_in_the_graph(serve, store):
    data = load_iris()
    picks = list(range(0, 150, 3))
    x = data.data[picks].astype("float32")
    named = dict(zip(VALUES, IRIS_LABELS, strict=True))  # the test's own vocabulary
    # What the model predicts, from scikit-learn itself, named as metadata.json says.
    expected_predictions = [named[int(v)] for v in fitted_classifier("logistic", VALUES).predict(x)]
    # Iris's classes, every fifth moved on by one: a wrong answer or two beside the model's own.
    truth = [VALUES[(t + (i % 5 == 1)) % 3] for i, t in enumerate(data.target[picks])]
    with serve(store) as client:
        rows = [[float(v) for v in row] for row in x]
        answers = client.post("/predict/batch", json={"model": "petals", "instances": rows}).json()
        assert answers["predictions"] == expected_predictions
        # Each item sends the actual class in one of its spellings, in turn: the value (30), the
        # value as a string ("30"), the name ("virginica"); some send the prediction by value.
        by_value = {name: value for value, name in named.items()}
        items = []
        for i, (prediction, actual) in enumerate(zip(answers["predictions"], truth, strict=True)):
            spelled = (actual, str(actual), named[actual])[i % 3]
            sent = by_value[prediction] if i % 4 == 0 else prediction
            items.append(
                {"request_id": f"row-{i}", "actual": spelled, "version": 1, "prediction": sent}
            )
        body = client.post("/feedback", json={"model": "petals", "items": items}).json()
        accuracy = gauges(client, "model_server_feedback_accuracy")
    right = [named[a] == p for a, p in zip(truth, expected_predictions, strict=True)]
    assert [i["outcome"] for i in body["items"]] == ["correct" if r else "incorrect" for r in right]
    assert 0 < sum(right) < len(right), "both outcomes occur"
    assert body["scored"] == len(right)
    assert accuracy[("petals", "1", "total")] == pytest.approx(sum(right) / len(right))


@pytest.mark.parametrize(
    ("actual", "prediction", "outcome"),
    [(30, "virginica", "correct"), ("30", "virginica", "correct"), (10, "virginica", "incorrect"),
     ("setosa", 10, "correct"), (20, "20", "correct"), ("versicolor", 30, "incorrect")],
)  # fmt: skip
def test_a_value_and_a_name_of_the_same_class_agree(serve, store, actual, prediction, outcome):
    item = {"request_id": "a", "actual": actual, "version": 1, "prediction": prediction}
    with serve(store) as client:
        body = client.post("/feedback", json={"model": "petals", "items": [item]}).json()
    assert body["items"][0]["outcome"] == outcome


def test_a_logged_answer_is_scored_against_a_class_value(serve, store, tmp_path):
    row = iris_rows(3)[2]
    with serve(store, prediction_log_dir=tmp_path / "log") as client:
        answer = client.post("/predict", json={"model": "petals", "features": row})
        named = answer.json()["prediction"]
        value = VALUES[IRIS_LABELS.index(named)]
        item = {"request_id": answer.headers["x-request-id"], "actual": value}
        body = client.post("/feedback", json={"model": "petals", "items": [item]}).json()
    assert body["items"][0]["outcome"] == "correct"


def test_string_classes_without_labels(serve, store, problem):
    rows = iris_rows(6)
    x = [[float(v) for v in row] for row in rows]
    predicted = fitted_classifier("logistic", WORDS).predict([row for row in x]).tolist()
    with serve(store) as client:
        items = [
            {"request_id": f"r{i}", "actual": WORDS[i % 3], "version": 1, "prediction": p}
            for i, p in enumerate(predicted)
        ]
        body = client.post("/feedback", json={"model": "words", "items": items}).json()
        index = {"request_id": "a", "actual": 0, "version": 1, "prediction": predicted[0]}
        refused = problem(
            client.post("/feedback", json={"model": "words", "items": [index]}), 422,
            ["items", 0, "actual"],
        )  # fmt: skip
    expected = ["correct" if WORDS[i % 3] == p else "incorrect" for i, p in enumerate(predicted)]
    assert [i["outcome"] for i in body["items"]] == expected
    # No labels: the classes are their own names, and listed once.
    (error,) = refused["errors"]
    assert all(repr(word) in error["msg"] for word in WORDS)
    assert "values" not in error["msg"]


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"request_id": "a", "actual": 30.0}, "actual"),
        ({"request_id": "a", "actual": 40}, "actual"),
        ({"request_id": "a", "actual": "40"}, "actual"),
        ({"request_id": "a", "actual": "Virginica"}, "actual"),
        ({"request_id": "a", "actual": 30, "version": 1, "prediction": 2}, "prediction"),
        ({"request_id": "a", "actual": 30, "version": 1, "prediction": 20.0}, "prediction"),
    ],
)  # fmt: skip
def test_what_is_neither_name_nor_value_is_refused(serve, store, problem, item, field):
    with serve(store) as client:
        response = client.post("/feedback", json={"model": "petals", "items": [item]})
        body = problem(response, 422, ["items", 0, field])
    (error,) = body["errors"]
    # The message lists both ways to name the classes.
    for name, value in zip(IRIS_LABELS, VALUES, strict=True):
        assert repr(name) in error["msg"] and str(value) in error["msg"]
    assert repr(item[field]) in error["msg"]


def test_a_long_list_of_classes_is_cut_short(serve, store, problem, monkeypatch):
    monkeypatch.setattr("app.routes.feedback.CLASSES_SHOWN", 2)
    with serve(store) as client:
        item = {"request_id": "a", "actual": 40}
        body = problem(client.post("/feedback", json={"model": "petals", "items": [item]}), 422)
    msg = body["errors"][0]["msg"]
    assert "'setosa', 'versicolor', ... 1 more" in msg and "virginica" not in msg
    assert "[10, 20, ... 1 more]" in msg


def test_without_the_log_nothing_can_be_joined(serve, store):
    with serve(store) as client:
        answer = client.post("/predict", json={"model": "flowers", "features": iris_rows(1)[0]})
        item = {"request_id": answer.headers["x-request-id"], "actual": 3}
        body = client.post("/feedback", json={"model": "flowers", "items": [item]}).json()
    assert body["items"][0]["outcome"] == "unknown"


@pytest.mark.parametrize(
    ("model", "item", "loc"),
    [
        ("flowers", {"request_id": "a", "actual": 4}, ["items", 0, "actual"]),
        ("flowers", {"request_id": "a", "actual": 3.0}, ["items", 0, "actual"]),
        ("flowers", {"request_id": "a", "actual": 3, "version": 1, "prediction": "x"},
         ["items", 0, "prediction"]),
        ("flowers", {"request_id": "a", "actual": 3, "version": 5, "prediction": 3},
         ["items", 0, "version"]),
        ("flowers", {"request_id": "a", "actual": True}, ["items", 0, "actual"]),
        ("flowers", {"request_id": "a b", "actual": 3}, ["items", 0, "request_id"]),
        ("flowers", {"request_id": "a", "actual": 3, "extra": 1}, ["items", 0, "extra"]),
        ("sugar", {"request_id": "a", "actual": "high"}, ["items", 0, "actual"]),
        ("raw", {"request_id": "a", "actual": 1.0}, ["items", 0, "actual"]),
    ],
)  # fmt: skip
def test_items_that_do_not_fit_the_model_refuse_the_call(serve, store, problem, model, item, loc):
    with serve(store) as client:
        good = {"request_id": "fine", "actual": 3, "version": 1, "prediction": 3}
        response = client.post("/feedback", json={"model": model, "items": [item, good]})
        problem(response, 422, loc)
        # Nothing of a refused call is counted.
        assert "model_server_feedback_total{" not in client.get("/metrics").text


def test_limits_and_unknown_models(serve, store, problem):
    with serve(store, feedback_max_items=2) as client:
        item = {"request_id": "a", "actual": 3, "version": 1, "prediction": 3}
        problem(client.post("/feedback", json={"model": "flowers", "items": [item] * 3}), 422,
                ["items"])  # fmt: skip
        problem(client.post("/feedback", json={"model": "flowers", "items": []}), 422, ["items"])
        problem(client.post("/feedback", json={"model": "nothing", "items": [item]}), 404)
        problem(client.post("/feedback", content=b"{", headers={"content-type":
                "application/json"}), 400)  # fmt: skip


def test_the_window_forgets_and_the_total_keeps(tmp_path):
    now = [1_000_000.0]
    book = FeedbackBook(Metrics(), 120, None, clock=lambda: now[0])
    book.score("m", 1, True, "a", "a")
    book.score("m", 1, True, "a", "b")
    now[0] += 200  # past the window
    book.score("m", 1, True, "a", "a")
    figures = book.summary()["m"][1]
    assert (figures["total"]["matched"], figures["total"]["correct"]) == (3, 2)
    assert (figures["recent"]["matched"], figures["recent"]["correct"]) == (1, 1)


def test_every_workers_figures_add_up(tmp_path):
    books = [FeedbackBook(Metrics(), 3600, str(tmp_path), pid=pid) for pid in (11, 12)]
    books[0].score("m", 2, False, 10.0, 12.5)
    books[1].score("m", 2, False, 10.0, 9.0)
    books[1].score("m", 3, False, 1.0, 1.0)
    for book in books:
        book.publish(book.snapshot())
    for book in books:  # whichever worker answers
        figures = book.summary()["m"]
        assert figures[2]["total"]["matched"] == 2
        assert figures[2]["total"]["mean_abs_error"] == pytest.approx((2.5 + 1.0) / 2)
        assert figures[3]["recent"]["mean_abs_error"] == 0.0


def test_a_logged_answer_the_model_cannot_read_is_unknown_not_a_failure(store):
    """Raw outputs kept for feedback (an Open Inference Protocol answer) naming a class the graph
    did not declare: the item cannot be joined, and the call goes on."""
    model = load_model("petals", 1, store / "petals" / "1", ModelConfig())  # classes named
    names = [spec.name for spec in model.signature.outputs]
    undeclared = {names[0]: np.array([5]), names[1]: np.array([[0.2, 0.3, 0.5]], np.float32)}
    assert read_outputs(model, undeclared) is None
    item = FeedbackItem(request_id="r-1", actual=IRIS_LABELS[0])
    entry = SimpleNamespace(name="petals")
    assert _joined(entry, item, (model, None, undeclared)) is None  # type: ignore[arg-type]
