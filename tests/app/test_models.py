"""GET /models and /models/{name}, and a version that fails to load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from live_server import DEMO_STORE

try:
    import jsonschema
except ImportError:  # not a dependency; the hand check below runs either way
    jsonschema = None

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


def _fits(schema: dict[str, Any], value: Any) -> bool:
    """The part of JSON Schema 2020-12 that a row schema uses (oneOf, type, properties,
    required, additionalProperties, prefixItems, items, minItems, maxItems)."""
    if "oneOf" in schema:
        return sum(_fits(branch, value) for branch in schema["oneOf"]) == 1
    kind = schema.get("type")
    if kind == "object":
        if type(value) is not dict:
            return False
        properties = schema.get("properties", {})
        if any(name not in value for name in schema.get("required", [])):
            return False
        if schema.get("additionalProperties") is False and set(value) - set(properties):
            return False
        return all(_fits(properties[k], v) for k, v in value.items() if k in properties)
    if kind == "array":
        if type(value) is not list:
            return False
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            return False
        prefix = schema.get("prefixItems", [])
        if schema.get("items") is False and len(value) > len(prefix):
            return False
        return all(_fits(s, v) for s, v in zip(prefix, value, strict=False))
    if kind == "number":
        return type(value) in (int, float)
    if kind == "integer":
        return type(value) is int
    if kind == "string":
        return type(value) is str
    if kind == "boolean":
        return type(value) is bool
    raise AssertionError(f"unexpected schema {schema}")


def assert_schema_accepts(schema: dict[str, Any], row: Any, accepted: bool) -> None:
    assert _fits(schema, row) is accepted, row
    if jsonschema is not None:
        validator = jsonschema.Draft202012Validator(schema)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert validator.is_valid(row) is accepted, row


def test_models_lists_every_model_with_versions_and_default(client):
    response = client.get("/models")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    models = {m["name"]: m for m in response.json()["models"]}
    assert list(models) == ["diabetes", "diabetes_pipeline", "iris"]
    assert models["iris"]["default_version"] == 2
    assert models["iris"]["version_policy"] == "latest:2"
    assert models["iris"]["versions"] == [
        {
            "version": 1,
            "state": "AVAILABLE",
            "error": None,
            "samples_checked": samples_in("iris", 1),
            "task": "classification",
            "missing_values": False,
            "targets": None,
        },
        {
            "version": 2,
            "state": "AVAILABLE",
            "error": None,
            "samples_checked": samples_in("iris", 2),
            "task": "classification",
            "missing_values": False,
            "targets": None,
        },
    ]
    for name in ("diabetes", "diabetes_pipeline"):
        assert models[name]["default_version"] == 1
        assert models[name]["versions"] == [
            {
                "version": 1,
                "state": "AVAILABLE",
                "error": None,
                "samples_checked": samples_in(name, 1),
                "task": "regression",
                "missing_values": False,
                "targets": None,
            }
        ]
        assert models[name]["error"] is None


def samples_in(model: str, version: int) -> int:
    """Rows of the demo version's samples.json (0 without one)."""
    path = DEMO_STORE / model / str(version) / "samples.json"
    return len(json.loads(path.read_text())["instances"]) if path.exists() else 0


def test_iris_detail(client):
    response = client.get("/models/iris")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "iris"
    assert body["version"] == 2
    assert body["default_version"] == 2
    assert body["task"] == "classification"
    assert body["features"] == [{"name": n, "type": "number"} for n in IRIS_FEATURES]
    assert body["labels"] == ["setosa", "versicolor", "virginica"]
    assert [v["version"] for v in body["versions"]] == [1, 2]
    assert {v["state"] for v in body["versions"]} == {"AVAILABLE"}
    assert isinstance(body["row_schema"], dict)


def test_iris_row_schema_accepts_good_rows_and_refuses_bad_ones(client):
    schema = client.get("/models/iris").json()["row_schema"]
    named = dict(zip(IRIS_FEATURES, IRIS_ROW, strict=True))

    for good in (IRIS_ROW, named, [5, 3, 1, 0]):
        assert_schema_accepts(schema, good, accepted=True)
    bad_rows = [
        IRIS_ROW[:3],
        [*IRIS_ROW, 1.0],
        [5.1, 3.5, "1.4", 0.2],
        {k: v for k, v in named.items() if k != "petal_width"},
        {**named, "colour": 1.0},
        {**named, "petal_width": "0.2"},
        "5.1,3.5,1.4,0.2",
    ]
    for bad in bad_rows:
        assert_schema_accepts(schema, bad, accepted=False)


def test_row_schema_agrees_with_predict(client):
    """What the schema accepts, /predict serves; what it refuses, /predict refuses."""
    schema = client.get("/models/iris").json()["row_schema"]
    for row, accepted in [(IRIS_ROW, True), (IRIS_ROW[:3], False), ([1, 2, "3", 4], False)]:
        assert _fits(schema, row) is accepted
        response = client.post("/predict", json={"model": "iris", "features": row})
        assert (response.status_code == 200) is accepted, response.text


def test_pipeline_detail_gives_the_string_column(client):
    body = client.get("/models/diabetes_pipeline").json()

    assert body["task"] == "regression"
    assert body["labels"] is None
    types = {f["name"]: f["type"] for f in body["features"]}
    assert types == {
        "age": "number",
        "sex": "string",
        "bmi": "number",
        "bp": "number",
        "s1": "number",
        "s2": "number",
        "s3": "number",
        "s4": "number",
        "s5": "number",
        "s6": "number",
    }
    row = {name: 1.0 for name in types} | {"sex": "male"}
    assert_schema_accepts(body["row_schema"], row, accepted=True)
    assert_schema_accepts(body["row_schema"], {**row, "sex": 1.0}, accepted=False)


def test_unknown_model_detail_is_404(client, problem):
    body = problem(client.get("/models/nope"), 404)

    assert "nope" in body["detail"]


@pytest.fixture
def store_with_a_broken_version(tmp_path, demo_store) -> Path:
    """iris serving every version, with a version 3 that onnxruntime cannot load."""
    from shutil import copytree

    store = copytree(demo_store, tmp_path / "store")
    (store / "iris" / "model.toml").write_text('version_policy = "all"\n')
    broken = store / "iris" / "3"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"this is not an ONNX model\x00\x01\x02" * 10)
    return store


def test_failed_version_is_listed_and_refused_while_others_serve(
    serve, store_with_a_broken_version, problem, reference
):
    with serve(store_with_a_broken_version) as client:
        listing = client.get("/models")
        detail = client.get("/models/iris")
        failed = client.post("/predict", json={"model": "iris", "version": 3, "features": IRIS_ROW})
        failed_batch = client.post(
            "/predict/batch", json={"model": "iris", "version": 3, "instances": [IRIS_ROW]}
        )
        default = client.post("/predict", json={"model": "iris", "features": IRIS_ROW})
        first = client.post("/predict", json={"model": "iris", "version": 1, "features": IRIS_ROW})
        other = client.post("/predict", json={"model": "diabetes", "features": [1.0] * 10})
        ready = client.get("/health/ready")

    iris = next(m for m in listing.json()["models"] if m["name"] == "iris")
    states = {v["version"]: v for v in iris["versions"]}
    assert states[1]["state"] == states[2]["state"] == "AVAILABLE"
    assert states[3]["state"] == "FAILED"
    assert isinstance(states[3]["error"], str) and states[3]["error"]
    assert "Traceback" not in states[3]["error"]
    assert iris["default_version"] == 2
    assert iris["version_policy"] == "all"
    assert detail.status_code == 200
    assert detail.json()["version"] == 2

    for response in (failed, failed_batch):
        body = problem(response, 503)
        assert "3" in body["detail"]
    labels, _ = reference.iris([IRIS_ROW], 2)
    assert default.status_code == 200, default.text
    assert default.json()["version"] == 2
    assert default.json()["prediction"] == labels[0]
    assert first.status_code == 200, first.text
    assert first.json()["version"] == 1
    assert other.status_code == 200, other.text
    assert ready.status_code == 200


def test_wrong_method_on_models_is_405(client, problem):
    problem(client.post("/models", json={}), 405)
    problem(client.delete("/models/iris"), 405)
