"""What the API does with hostile or careless callers: admin routes behind a bearer token compared
in constant time, names from URLs and bodies that never reach the file system, bounded bodies,
the docs switch, and errors that never echo a traceback or a server path."""

from __future__ import annotations

import ast
import builtins
import hmac
import inspect
import io
import os
import pathlib
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import onnxruntime as ort
import orjson
import pytest

from app.routes import admin
from ml.model import LoadedModel

TOKEN = "admin-token-0123456789abcdef"
ROW = [5.1, 3.5, 1.4, 0.2]
PROBLEM = "application/problem+json"
LIMIT = 2048
V2_INFER = "/v2/models/iris/infer"


def v2_body(rows: list[list[float]]) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input",
                "shape": [len(rows), 4],
                "datatype": "FP32",
                "data": [v for row in rows for v in row],
            }
        ]
    }


def no_leak(response: httpx.Response, *paths: Path) -> None:
    """The answer names no server path and carries no traceback."""
    text = response.text
    assert "Traceback" not in text, text
    assert 'File "' not in text, text
    for path in paths:
        for form in {str(path), str(path.resolve())}:
            assert form not in text, text


@pytest.fixture(scope="module")
def admin_client(serve, demo_store) -> Iterator[Any]:
    with serve(demo_store, admin_token=TOKEN) as client:
        yield client


# -- admin routes ------------------------------------------------------------------------------


def last_char_changed(token: str) -> str:
    return token[:-1] + ("x" if token[-1] != "x" else "y")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {last_char_changed(TOKEN)}"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
    ],
    ids=[
        "none",
        "wrong",
        "last-char",
        "prefix",
        "longer",
        "basic",
        "no-scheme",
        "bearer-only",
        "bearer-empty",
    ],
)
def test_admin_without_the_right_token_is_401(admin_client, problem, headers):
    response = admin_client.post("/admin/reload", headers=headers)

    body = problem(response, 401)
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    assert TOKEN not in response.text
    assert TOKEN not in body["detail"]


def test_admin_with_the_right_token_is_200(admin_client):
    response = admin_client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200, response.text
    assert set(response.json()) == {"loaded", "unloaded", "failed"}


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": "Bearer "}]
)
def test_admin_without_a_configured_token_is_403(client, problem, headers):
    problem(client.post("/admin/reload", headers=headers), 403)


def test_admin_token_is_compared_with_compare_digest():
    """Read the source rather than time anything: the only comparison of the token is
    hmac.compare_digest, and no `==`/`!=` touches it."""
    source = textwrap.dedent(inspect.getsource(admin.require_admin))
    tree = ast.parse(source)
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "compare_digest"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "hmac"
    ]
    assert len(calls) == 1, source
    assert "get_secret_value" in ast.unparse(calls[0]), source
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
        ):
            assert "token" not in ast.unparse(node), (
                f"the token is compared with ==: {ast.unparse(node)}"
            )


def test_admin_token_goes_through_compare_digest(admin_client, monkeypatch):
    """And the route really calls it, with the given and the configured token."""
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    wrong = last_char_changed(TOKEN)
    response = admin_client.post("/admin/reload", headers={"Authorization": f"Bearer {wrong}"})

    assert response.status_code == 401, response.text
    assert seen == [(wrong.encode(), TOKEN.encode())]


# -- names never reach the file system ---------------------------------------------------------


class FileSystemSpy:
    """Records every path handed to the usual ways of touching files, while it is on."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.on = False

    def wrap(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def recording(*args: Any, **kwargs: Any) -> Any:
            if self.on:
                target = args[0] if args else kwargs.get("path", kwargs.get("file"))
                if isinstance(target, str | bytes | os.PathLike):
                    self.paths.append(os.fsdecode(os.fspath(target)))
            return real(*args, **kwargs)

        return recording

    def touched(self, store: Path) -> list[str]:
        """Paths under `store`, or naming the traversal targets of these tests."""
        roots = (str(store), str(store.resolve()))
        return [
            p
            for p in self.paths
            if os.path.abspath(p).startswith(roots) or "passwd" in p or ".." in p
        ]


@pytest.fixture
def fs_spy(monkeypatch) -> FileSystemSpy:
    spy = FileSystemSpy()
    # pathlib's open, stat, exists, is_file, is_dir, iterdir and read_text all end in these.
    for module, name in [
        (builtins, "open"),
        (io, "open"),
        (os, "open"),
        (os, "stat"),
        (os, "lstat"),
        (os, "scandir"),
        (os, "listdir"),
        (os, "access"),
        (pathlib.Path, "open"),
        (ort, "InferenceSession"),
    ]:
        monkeypatch.setattr(module, name, spy.wrap(getattr(module, name)))
    return spy


async def raw_asgi_request(app: Any, method: str, path: str, body: bytes = b"") -> int:
    """Send `path` as is (httpx would remove its dot segments) and return the status."""
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 12345),
        "server": ("testserver", 80),
        "state": {},
    }
    sent = False
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


TRAVERSAL_GETS = [
    "/models/..%2F..%2Fetc%2Fpasswd",
    "/models/%2e%2e",
    "/models/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/models/..",
    "/models/IRIS",
    "/models/" + "a" * 65,
    "/v2/models/..%2Fx",
    "/v2/models/..%2F..%2Fetc%2Fpasswd/ready",
    "/v2/models/%2e%2e",
    "/v2/models/%2e%2e/versions/1",
    "/v2/models/iris/versions/%2e%2e",
    "/v2/models/iris/versions/..%2F..%2F1",
    "/v2/models/iris/versions/1%2F..%2F2/ready",
]
RAW_GETS = [
    "/models/../../etc/passwd",
    "/models/../iris",
    "/models/..",
    "/v2/models/../../etc/passwd",
    "/v2/models/iris/versions/../../1",
]
BAD_NAMES = ["../iris", "..", ".", "iris/../iris", "IRIS", "a" * 65, "/etc/passwd", "iris\x00"]


@pytest.mark.parametrize("path", TRAVERSAL_GETS)
def test_names_in_urls_never_reach_the_file_system(admin_client, demo_store, fs_spy, path):
    fs_spy.on = True
    response = admin_client.get(path)
    fs_spy.on = False

    assert response.status_code in (404, 422), (path, response.status_code, response.text)
    no_leak(response, demo_store)
    assert fs_spy.touched(demo_store) == [], fs_spy.paths


@pytest.mark.parametrize("path", RAW_GETS)
def test_dot_segments_sent_as_is_never_reach_the_file_system(
    admin_client, demo_store, fs_spy, path
):
    fs_spy.on = True
    status = admin_client.portal.call(raw_asgi_request, admin_client.app, "GET", path)
    fs_spy.on = False

    assert status in (404, 422), (path, status)
    assert fs_spy.touched(demo_store) == [], fs_spy.paths


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("route", ["/predict", "/predict/batch"])
def test_bad_model_names_in_bodies_are_refused_before_the_file_system(
    admin_client, demo_store, fs_spy, problem, name, route
):
    body: dict[str, Any] = {"model": name}
    body |= {"features": ROW} if route == "/predict" else {"instances": [ROW]}
    fs_spy.on = True
    response = admin_client.post(route, json=body)
    fs_spy.on = False

    assert response.status_code in (404, 422), response.text
    if response.status_code == 422:
        problem(response, 422, ["model"])
    no_leak(response, demo_store)
    assert fs_spy.touched(demo_store) == [], fs_spy.paths


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/..%2Firis/infer",
        "/v2/models/%2e%2e/infer",
        "/v2/models/IRIS/infer",
        "/v2/models/iris/versions/%2e%2e/infer",
        "/v2/models/iris/versions/..%2F2/infer",
    ],
)
def test_bad_names_on_v2_infer_never_reach_the_file_system(admin_client, demo_store, fs_spy, path):
    fs_spy.on = True
    response = admin_client.post(path, json=v2_body([ROW]))
    fs_spy.on = False

    assert response.status_code in (404, 422), (path, response.text)
    no_leak(response, demo_store)
    assert fs_spy.touched(demo_store) == [], fs_spy.paths


def test_the_file_system_spy_sees_a_scan(admin_client, demo_store, fs_spy):
    """The spy is not blind: a rescan of the store shows up in it."""
    fs_spy.on = True
    response = admin_client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    fs_spy.on = False

    assert response.status_code == 200, response.text
    assert fs_spy.touched(demo_store), fs_spy.paths


# -- bounded bodies ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(serve, demo_store) -> Iterator[Any]:
    with serve(demo_store, max_body_bytes=LIMIT) as client:
        yield client


def oversized(route: str) -> bytes:
    """A body of 2 x LIMIT bytes that would be valid without the limit."""
    if route == "/predict":
        body = orjson.dumps({"model": "iris", "features": ROW})
    elif route == "/predict/batch":
        body = orjson.dumps({"model": "iris", "instances": [ROW]})
    else:
        body = orjson.dumps(v2_body([ROW]))
    return body + b" " * (2 * LIMIT - len(body))


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("route", ["/predict", "/predict/batch", V2_INFER])
def test_body_twice_the_limit_is_413(small, route, streamed):
    content = oversized(route)
    assert len(content) == 2 * LIMIT
    data: Any = content
    if streamed:

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(content), 256):
                yield content[start : start + 256]

        data = chunks()
    response = small.post(route, content=data, headers={"content-type": "application/json"})

    assert response.status_code == 413, response.text
    if route == V2_INFER:
        assert "error" in response.json()
    else:
        assert response.headers["content-type"].startswith(PROBLEM)


@pytest.mark.parametrize("route", ["/predict", "/predict/batch", V2_INFER])
def test_the_same_body_under_the_limit_is_served(small, route):
    content = oversized(route).rstrip()
    response = small.post(route, content=content, headers={"content-type": "application/json"})

    assert response.status_code == 200, response.text


# -- docs --------------------------------------------------------------------------------------

DOC_PATHS = ["/docs", "/redoc", "/openapi.json"]


@pytest.mark.parametrize("enabled", [False, True])
def test_docs_follow_docs_enabled(serve, demo_store, enabled):
    with serve(demo_store, docs_enabled=enabled) as client:
        statuses = {path: client.get(path).status_code for path in DOC_PATHS}

    expected = 200 if enabled else 404
    assert statuses == dict.fromkeys(DOC_PATHS, expected)


# -- internal errors ---------------------------------------------------------------------------

SECRET_PATH = "/secret/path"


@pytest.fixture
def broken(serve, demo_store, monkeypatch) -> Iterator[Any]:
    """The app, with every model run raising an error that names a server path: patched where
    runs on the loop and in worker threads meet, since the warm-up decides by the machine's speed
    up to how many rows a run stays on the loop."""

    def boom(self: LoadedModel, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{SECRET_PATH} boom")

    with serve(demo_store) as client:
        monkeypatch.setattr(LoadedModel, "_timed_run", boom)
        yield client


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/predict", {"model": "iris", "features": ROW}),
        ("/predict/batch", {"model": "iris", "instances": [ROW] * 50}),
        (V2_INFER, v2_body([ROW])),
        (V2_INFER, v2_body([ROW] * 50)),
    ],
    ids=["predict", "batch", "v2-one", "v2-many"],
)
def test_internal_error_is_500_without_path_or_traceback(broken, demo_store, route, body):
    response = broken.post(route, json=body)

    assert response.status_code == 500, response.text
    if route == V2_INFER:
        assert set(response.json()) == {"error"}, response.text
    else:
        assert response.headers["content-type"].startswith(PROBLEM)
        assert response.json()["status"] == 500
    assert SECRET_PATH not in response.text
    assert "boom" not in response.text
    assert "RuntimeError" not in response.text
    no_leak(response, demo_store)
