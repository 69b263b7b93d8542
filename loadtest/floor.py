"""A server that answers every request at once with the same small JSON: run on this machine,
it costs next to nothing, so the rate Locust reaches against it is the generator's own limit.

    uvicorn loadtest.floor:app
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from loadtest.server import serve

BODY = b'{"status":"ok"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the body, as a server must, and drop it
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


@contextlib.contextmanager
def floor_server() -> Iterator[str]:
    """This module's app under uvicorn on a free loopback port; yields its URL."""
    command = [
        sys.executable, "-m", "uvicorn", "loadtest.floor:app", "--host", "127.0.0.1",
        "--port", "{port}", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    with serve(command, ready_path="/") as served:
        yield served.url
