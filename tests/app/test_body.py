"""The request body before validation: size limit, content type, JSON syntax, top-level type."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import pytest

ROUTES = ["/predict", "/predict/batch"]
LIMIT = 300
GOOD = {
    "/predict": {"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]},
    "/predict/batch": {"model": "iris", "instances": [[5.1, 3.5, 1.4, 0.2]]},
}


def padded(route: str, size: int) -> bytes:
    """A valid body of exactly `size` bytes (JSON ignores the trailing spaces)."""
    body = json.dumps(GOOD[route]).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


@pytest.fixture(scope="module")
def small(serve, demo_store) -> Iterator[object]:
    """The demo store behind a small body limit."""
    with serve(demo_store, max_body_bytes=LIMIT) as client:
        yield client


@pytest.mark.parametrize("route", ROUTES)
def test_body_at_the_limit_is_served(small, route):
    response = small.post(
        route, content=padded(route, LIMIT), headers={"content-type": "application/json"}
    )

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("route", ROUTES)
def test_body_over_the_limit_is_413(small, problem, route):
    response = small.post(
        route, content=padded(route, LIMIT + 1), headers={"content-type": "application/json"}
    )

    body = problem(response, 413)
    assert str(LIMIT) in body["detail"]


@pytest.mark.parametrize("route", ROUTES)
def test_streamed_body_over_the_limit_is_413(small, problem, route):
    """No Content-Length: the limit holds while the body streams in."""
    content = padded(route, LIMIT * 4)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(content), 64):
            yield content[start : start + 64]

    response = small.post(route, content=chunks(), headers={"content-type": "application/json"})

    problem(response, 413)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_wrong_content_type_is_415(small, problem, route, content_type):
    response = small.post(
        route, content=json.dumps(GOOD[route]).encode(), headers={"content-type": content_type}
    )

    problem(response, 415)


@pytest.mark.parametrize("route", ROUTES)
def test_form_body_is_415(small, problem, route):
    response = small.post(route, data={"model": "iris", "features": "5.1,3.5,1.4,0.2"})

    problem(response, 415)


@pytest.mark.parametrize("route", ROUTES)
def test_missing_content_type_is_415(small, problem, route):
    response = small.post(route, content=json.dumps(GOOD[route]).encode())

    assert "content-type" not in response.request.headers
    problem(response, 415)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("encoding", ["gzip", "br", " Deflate "])
def test_compressed_body_is_415_naming_the_encoding(small, problem, route, encoding):
    # Refused before it is read, even past the size limit: it would be refused once read.
    content = gzip.compress(json.dumps(GOOD[route]).encode()) + bytes(LIMIT)
    headers = {"content-type": "application/json", "content-encoding": encoding}

    body = problem(small.post(route, content=content, headers=headers), 415)

    assert f"Content-Encoding {encoding.strip()}" in body["detail"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("encoding", ["identity", "IDENTITY", ""])
def test_identity_encoding_is_read(small, route, encoding):
    headers = {"content-type": "application/json", "content-encoding": encoding}

    response = small.post(route, content=json.dumps(GOOD[route]).encode(), headers=headers)

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "content", [b"{", b'{"model": "iris",}', b"", b"model=iris", b'{"model": "iris"} x', b"\xff"]
)
def test_broken_json_is_400(small, problem, route, content):
    response = small.post(route, content=content, headers={"content-type": "application/json"})

    problem(response, 400)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("content", [b"[]", b"[1, 2, 3, 4]", b"4", b'"iris"', b"null", b"true"])
def test_json_that_is_not_an_object_is_422(small, problem, route, content):
    response = small.post(route, content=content, headers={"content-type": "application/json"})

    body = problem(response, 422)
    assert body["errors"], body
