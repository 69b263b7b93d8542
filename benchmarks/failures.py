"""A benchmark whose requests failed, or answered other than expected, has measured nothing: a
server that answers 4xx fast would "win". Every benchmark checks the answers it times at least
once and exits non-zero, naming what went wrong, when any request failed."""

from __future__ import annotations

import functools
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Check = Callable[[Any], str | None]
BINARY_HEADER = "Inference-Header-Content-Length"


class BenchmarkFailed(Exception):
    """The run's figures would mean nothing; the message says why."""


def exits_non_zero_on_failure(
    main: Callable[[Sequence[str] | None], int],
) -> Callable[[Sequence[str] | None], int]:
    """Wraps a benchmark's `main`: a BenchmarkFailed becomes one line on stderr and exit 1."""

    @functools.wraps(main)
    def wrapped(argv: Sequence[str] | None = None) -> int:
        try:
            return main(argv)
        except BenchmarkFailed as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 1

    return wrapped


def require(condition: bool, what: str) -> None:
    if not condition:
        raise BenchmarkFailed(what)


def check_answer(
    url: str,
    body: str | bytes | None,
    check: Check | None = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """Send the request a benchmark is about to time once; it must answer 200 with JSON that
    `check` accepts (it returns what is wrong, or None). A text body goes as JSON, a bytes body
    with `headers`; of an answer with binary data after its JSON (the Open Inference Protocol's
    `Inference-Header-Content-Length`), the JSON part is checked. Returns the decoded answer."""
    request = urllib.request.Request(
        url,
        data=body.encode() if isinstance(body, str) else body,
        headers=dict(headers or {"Content-Type": "application/json"}),
        method="GET" if body is None else "POST",
    )
    json_size = None
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
            json_size = response.headers.get(BINARY_HEADER)
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    require(status == 200, f"{url} answered {status}: {raw[:300]!r}")
    if json_size is not None:
        raw = raw[: int(json_size)]
    try:
        answer = json.loads(raw)
    except ValueError as exc:
        raise BenchmarkFailed(f"{url} answered no JSON: {raw[:300]!r}") from exc
    problem = check(answer) if check is not None else None
    require(problem is None, f"{url}: {problem}")
    return answer


def has_prediction(answer: Any) -> str | None:
    """A single-row answer: ours and the naive wrapper's `prediction`, or the bare floor's
    `predictions` holding one."""
    if isinstance(answer, dict) and (
        "prediction" in answer
        or (isinstance(answer.get("predictions"), list) and len(answer["predictions"]) == 1)
    ):
        return None
    return f"no prediction in {str(answer)[:200]}"


def has_predictions(rows: int) -> Check:
    def check(answer: Any) -> str | None:
        predictions = answer.get("predictions") if isinstance(answer, dict) else None
        if isinstance(predictions, list) and len(predictions) == rows:
            return None
        return f"expected {rows} predictions in {str(answer)[:200]}"

    return check


def has_outputs(*names: str) -> Check:
    """An Open Inference Protocol answer that carries these outputs."""

    def check(answer: Any) -> str | None:
        outputs = answer.get("outputs") if isinstance(answer, dict) else None
        found = [o.get("name") for o in outputs if isinstance(o, dict)] if outputs else []
        if all(name in found for name in names):
            return None
        return f"expected outputs {', '.join(names)} in {str(answer)[:200]}"

    return check
