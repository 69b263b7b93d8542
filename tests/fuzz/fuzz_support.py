"""What the fuzz tests share: the answer rule every response must keep, valid requests to send
after the bad ones, and a tally of the cases run.

The app fixtures and the problem+json check are the API tests' own, loaded from
tests/app/conftest.py by path (a module named `conftest` cannot be imported by name twice).
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

_APP_CONFTEST = Path(__file__).resolve().parents[1] / "app" / "conftest.py"
_spec = importlib.util.spec_from_file_location("_fuzz_app_fixtures", _APP_CONFTEST)
assert _spec is not None and _spec.loader is not None
app_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(app_fixtures)

ADMIN_TOKEN = "fuzz-admin-token-0123456789"
VALID_PREDICT = {"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]}
VALID_BATCH = {"model": "iris", "instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
VALID_V2 = {
    "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]
}


def is_v2(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


def check_answer(
    path: str,
    status: int,
    headers: Iterable[tuple[str, str]],
    content: bytes,
    secrets: Iterable[str] = (),
) -> None:
    """The rule: 2xx or 4xx, never 5xx (nor 1xx/3xx); a 4xx is problem+json on the service's
    routes and `{"error": "..."}` (JSON) under /v2; no traceback, no file path, none of
    `secrets` (the store's absolute path) anywhere in the body or the headers."""
    headers = list(headers)
    text = content.decode("utf-8", "replace")
    shown = f"{status} {path}: {text[:500]!r}"
    assert 200 <= status < 300 or 400 <= status < 500, shown
    everything = text + "\n" + "\n".join(f"{k}: {v}" for k, v in headers)
    assert "Traceback" not in everything, shown
    assert 'File "' not in everything, shown
    for secret in secrets:
        assert secret not in everything, f"{secret!r} leaked: {shown}"
    if status < 400:
        return
    response = httpx.Response(status, headers=headers, content=content)
    if is_v2(path):
        assert response.headers["content-type"].startswith("application/json"), shown
        body = json.loads(content)
        assert isinstance(body, dict) and set(body) == {"error"}, shown
        assert isinstance(body["error"], str) and body["error"], shown
    else:
        app_fixtures.check_problem(response, status)


def store_secrets(store: Path) -> list[str]:
    """The temp store's absolute path, as given and resolved."""
    return sorted({str(store), str(store.resolve())})


class Tally:
    """Cases run, by label; printed at the end of a test so that the run's log shows them."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, label: str) -> None:
        self.counts[label] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def report(self, title: str) -> str:
        width = max((len(label) for label in self.counts), default=0)
        lines = [f"{title}: {self.total} cases"]
        lines += [f"  {label:<{width}}  {n:>5}" for label, n in sorted(self.counts.items())]
        return "\n".join(lines)


def headers_of(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Header pairs from a mapping whose values are strings or lists of strings."""
    pairs = []
    for key, value in raw.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, item))
    return pairs
