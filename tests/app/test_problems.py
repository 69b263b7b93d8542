"""Every error of the service's routes is one RFC 9457 problem+json body, never a traceback."""

from __future__ import annotations

import pytest

JSON = {"content-type": "application/json"}

# (method, path, body bytes or None, headers, expected status)
ERRORS = [
    ("GET", "/nope", None, {}, 404),
    ("GET", "/models/nope", None, {}, 404),
    ("GET", "/models/" + "x" * 65, None, {}, 422),
    ("POST", "/nope", b"{}", JSON, 404),
    ("GET", "/predict", None, {}, 405),
    ("GET", "/predict/batch", None, {}, 405),
    ("PUT", "/models", None, {}, 405),
    ("POST", "/health/live", None, {}, 405),
    ("POST", "/predict", b"{", JSON, 400),
    ("POST", "/predict", b"{}", {"content-type": "text/plain"}, 415),
    ("POST", "/predict", b"[1]", JSON, 422),
    ("POST", "/predict", b'{"model": "iris", "features": [1, 2]}', JSON, 422),
    ("POST", "/predict", b'{"model": "iris", "features": [NaN, 1, 2, 3]}', JSON, 422),
    ("POST", "/predict", b'{"model": "iris", "version": 9, "features": [1, 2, 3, 4]}', JSON, 404),
    ("POST", "/predict", b'{"model": "nope", "features": [1, 2, 3, 4]}', JSON, 404),
    ("POST", "/predict/batch", b'{"model": "iris", "instances": []}', JSON, 422),
    ("POST", "/predict/batch", b'{"model": "iris", "instances": [[1, 2, "x", 4]]}', JSON, 422),
]


@pytest.mark.parametrize(
    ("method", "path", "content", "headers", "status"),
    ERRORS,
    ids=[f"{m} {p} {s}" for m, p, _, _, s in ERRORS],
)
def test_error_is_a_problem_without_traceback(
    client, problem, method, path, content, headers, status
):
    response = client.request(method, path, content=content, headers=headers)

    body = problem(response, status)
    assert body["type"].startswith("/problems/") or body["type"] == "about:blank"


def test_unknown_path_is_404_problem(client, problem):
    body = problem(client.get("/nope"), 404)

    assert body["title"]


def test_wrong_method_is_405_problem_with_allow(client, problem):
    response = client.delete("/predict")

    problem(response, 405)
    assert "POST" in response.headers.get("allow", "")


def test_problem_type_is_stable_per_kind(client, problem):
    """Clients branch on `type`: the same kind of error gives the same type."""
    first = problem(client.post("/predict", json={"model": "iris", "features": [1]}), 422)
    second = problem(client.post("/predict", json={"model": "iris", "extra": 1}), 422)
    missing = problem(client.post("/predict", json={"model": "nope", "features": [1]}), 404)

    assert first["type"] == second["type"]
    assert missing["type"] != first["type"]
