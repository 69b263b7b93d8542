"""Every request the load test builds is valid: sent once to a real server, each answers 200."""

from __future__ import annotations

import httpx
import pytest
from conftest import DEMO_MODELS, OTHER_MODELS
from live_server import LiveServer

from loadtest.payloads import Route, Stream, model_stream
from loadtest.rows import describe, generate_rows


def send_all(server: LiveServer, stream: Stream) -> list[tuple[int, str]]:
    """Every body of `stream`, sent once; the status and answer of each that is not 200."""
    refused = []
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        for index in range(len(stream.bodies)):
            body, headers = stream.request(index)
            response = client.request(stream.method, stream.path, content=body, headers=headers)
            if response.status_code != 200:
                refused.append((response.status_code, response.text))
    return refused


@pytest.mark.parametrize("route", list(Route))
@pytest.mark.parametrize("model", DEMO_MODELS + OTHER_MODELS)
def test_every_generated_request_answers_200(served: LiveServer, model: str, route: Route):
    with httpx.Client(base_url=served.url) as client:
        inputs = describe(client, model)
    rows = generate_rows(inputs, 64, seed=7)
    stream = model_stream(inputs, rows, route, batch_rows=8, pin_version=True, bodies=12)
    assert len(stream.bodies) == 12
    assert send_all(served, stream) == []


def test_string_columns_get_strings_and_numbers_get_their_json_types(served: LiveServer):
    with httpx.Client(base_url=served.url) as client:
        inputs = describe(client, "churn-risk")
    kinds = {f.name: f.type for f in inputs.features}
    assert kinds == {"color": "string", "size": "number", "count": "integer"}
    for row in generate_rows(inputs, 20):
        assert isinstance(row, dict)
        assert isinstance(row["color"], str)
        assert type(row["size"]) is float
        assert type(row["count"]) is int


def test_a_version_that_takes_other_inputs_gets_rows_of_its_own(served: LiveServer):
    """GET /models describes the default version (2, with a string column); version 1 takes one
    float tensor, which its V2 metadata describes: rows for it are lists of three numbers."""
    with httpx.Client(base_url=served.url) as client:
        default = describe(client, "shifting")
        older = describe(client, "shifting", 1)
    assert default.version == 2
    assert default.named
    assert not older.named
    assert [f.type for f in older.features] == ["number"] * 3
    for inputs in (default, older):
        rows = generate_rows(inputs, 16)
        for route in Route:
            stream = model_stream(inputs, rows, route, batch_rows=4, pin_version=True, bodies=4)
            assert send_all(served, stream) == [], (inputs.version, route)


def test_batches_to_a_fixed_batch_dimension_are_split_for_v2(served: LiveServer):
    with httpx.Client(base_url=served.url) as client:
        inputs = describe(client, "one-at-a-time")
    stream = model_stream(inputs, generate_rows(inputs, 8), Route.V2, 8, True, bodies=3)
    body, _ = stream.request(0)
    assert b'"shape": [1, 3]' in body
    assert send_all(served, stream) == []
