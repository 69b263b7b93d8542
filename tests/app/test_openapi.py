"""The OpenAPI document describes the bodies that the predict routes read themselves."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def openapi(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(
    ("path", "schema", "rows_key"),
    [("/predict", "PredictRequest", "features"), ("/predict/batch", "BatchRequest", "instances")],
)
def test_predict_request_bodies_are_documented(openapi, path, schema, rows_key):
    body = openapi["paths"][path]["post"]["requestBody"]
    assert body["required"] is True
    ref = body["content"]["application/json"]["schema"]["$ref"]
    assert ref == f"#/components/schemas/{schema}"

    definition = openapi["components"]["schemas"][schema]
    assert definition["type"] == "object"
    assert definition["additionalProperties"] is False
    assert set(definition["properties"]) == {"model", "version", rows_key}
    assert definition["required"] == [rows_key]
    assert definition["examples"]
    for example in definition["examples"]:
        assert set(example) <= {"model", "version", rows_key}


def test_examples_are_served(client, openapi):
    """Each documented example is a request the demo store answers."""
    for path, schema in (("/predict", "PredictRequest"), ("/predict/batch", "BatchRequest")):
        for example in openapi["components"]["schemas"][schema]["examples"]:
            response = client.post(path, json=example)
            assert response.status_code == 200, (example, response.text)


def test_error_answers_are_documented(openapi):
    responses = openapi["paths"]["/predict"]["post"]["responses"]
    for status in ("400", "404", "413", "415", "422", "503"):
        assert "application/problem+json" in responses[status]["content"]


def test_every_reference_resolves(openapi):
    schemas = openapi["components"]["schemas"]

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    for ref in refs(openapi):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas, ref


def test_docs_page_answers(client):
    response = client.get("/docs")

    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
