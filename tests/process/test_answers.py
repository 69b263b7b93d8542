"""Answers that match the model (CONTRACT section 5), against the real process, with a store of
models the demo does not have: integer classes named by labels, classes 3/7/9 behind a ZipMap, a
hand-built graph, and versions whose samples.json passes or fails.

Expected answers come from scikit-learn itself, never from the server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from live_server import LiveServer
from onnx_factories import fitted_classifier, iris_rows, write_classifier, write_double_input_model

TOKEN = "answers-test-token"
NAMES = ["setosa", "versicolor", "virginica"]
ROWS = iris_rows(150)[::15]


def sklearn_answer(classes: tuple[Any, ...], labels: list[str] | None) -> dict[str, Any]:
    """What /predict/batch must answer for ROWS, from scikit-learn's predict and predict_proba."""
    model = fitted_classifier("forest", classes)
    x = np.asarray(ROWS, dtype=np.float32)
    keys = [str(c) for c in (labels or classes)]
    name = dict(zip(model.classes_.tolist(), labels or model.classes_.tolist(), strict=True))
    return {
        "predictions": [name[c] for c in model.predict(x).tolist()],
        "probabilities": [dict(zip(keys, p, strict=True)) for p in model.predict_proba(x).tolist()],
    }


def write_samples(folder: Path, expected: dict[str, Any]) -> None:
    staged = folder / ".samples.json.tmp"
    staged.write_text(json.dumps({"instances": ROWS, "expected": expected}))
    os.replace(staged, folder / "samples.json")  # atomic, as a data scientist would ship it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("answers")
    store = root / "store"
    species = write_classifier(
        store / "species" / "1", "forest", (0, 1, 2), metadata={"labels": NAMES}
    )
    write_samples(species, sklearn_answer((0, 1, 2), NAMES))
    codes = write_classifier(
        store / "codes" / "1",
        "forest",
        (3, 7, 9),
        zipmap=True,
        metadata={"labels": ["a", "b", "c"]},
    )
    write_samples(codes, sklearn_answer((3, 7, 9), ["a", "b", "c"]))
    write_classifier(store / "numbers" / "1", "forest", (3, 7, 9))
    write_double_input_model(store / "summed" / "1")
    broken = write_classifier(store / "broken" / "1", "forest", (0, 1, 2))
    wrong = sklearn_answer((0, 1, 2), None)
    wrong["predictions"][4] = 2 if wrong["predictions"][4] != 2 else 0
    write_samples(broken, wrong)
    with LiveServer.start(store, root, env={"ADMIN_TOKEN": TOKEN}) as live:
        yield live


def batch(server: LiveServer, model: str) -> httpx.Response:
    return httpx.post(server.url + "/predict/batch", json={"model": model, "instances": ROWS})


def versions(server: LiveServer, model: str) -> list[dict[str, Any]]:
    models = httpx.get(server.url + "/models").json()["models"]
    return next(m for m in models if m["name"] == model)["versions"]


def reload(server: LiveServer) -> dict[str, Any]:
    response = httpx.post(
        server.url + "/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def assert_answers(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["predictions"] == want["predictions"]
    for g, w in zip(got["probabilities"], want["probabilities"], strict=True):
        assert list(g) == list(w)
        np.testing.assert_allclose(list(g.values()), list(w.values()), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("model", "classes", "labels"),
    [
        ("species", (0, 1, 2), NAMES),
        ("codes", (3, 7, 9), ["a", "b", "c"]),
        ("numbers", (3, 7, 9), None),
    ],
)
def test_classifiers_answer_in_one_vocabulary(
    server: LiveServer, model: str, classes: tuple[Any, ...], labels: list[str] | None
) -> None:
    response = batch(server, model)
    assert response.status_code == 200, response.text
    assert_answers(response.json(), sklearn_answer(classes, labels))
    one = httpx.post(server.url + "/predict", json={"model": model, "features": ROWS[5]}).json()
    assert str(one["prediction"]) in one["probabilities"]
    assert one["prediction"] == sklearn_answer(classes, labels)["predictions"][5]


def test_samples_checked_is_shown_per_version(server: LiveServer) -> None:
    assert versions(server, "species")[0]["samples_checked"] == len(ROWS)
    assert versions(server, "numbers")[0]["samples_checked"] == 0
    detail = httpx.get(server.url + "/models/codes").json()
    assert detail["versions"][0]["samples_checked"] == len(ROWS)
    assert detail["labels"] == ["a", "b", "c"]


def test_a_hand_built_single_output_model_answers_outputs(server: LiveServer) -> None:
    response = httpx.post(server.url + "/predict", json={"model": "summed", "features": [1, 2]})
    assert response.status_code == 200, response.text
    assert response.json() == {"model": "summed", "version": 1, "outputs": {"y": [3.0]}}


def test_failed_samples_keep_a_version_out_until_they_pass(server: LiveServer) -> None:
    (entry,) = versions(server, "broken")
    assert entry["state"] == "FAILED"
    assert entry["samples_checked"] is None
    assert entry["error"].startswith("samples.json row 4: prediction ")
    assert batch(server, "broken").status_code in (404, 503)
    assert batch(server, "species").status_code == 200  # the others serve
    write_samples(server.store / "broken" / "1", sklearn_answer((0, 1, 2), None))
    assert {"model": "broken", "version": 1} in reload(server)["loaded"]
    assert versions(server, "broken")[0]["samples_checked"] == len(ROWS)
    assert batch(server, "broken").status_code == 200


def test_changed_samples_that_fail_keep_the_earlier_load_serving(server: LiveServer) -> None:
    folder = server.store / "codes" / "1"
    good = json.loads((folder / "samples.json").read_text())["expected"]
    bad = json.loads(json.dumps(good))
    bad["probabilities"][0]["a"] += 0.5
    write_samples(folder, bad)
    reload(server)
    (entry,) = versions(server, "codes")
    assert entry["state"] == "AVAILABLE"
    assert "samples.json row 0: probabilities.a" in entry["error"]
    assert batch(server, "codes").status_code == 200
    write_samples(folder, good)
    reload(server)
    assert versions(server, "codes")[0]["error"] is None
