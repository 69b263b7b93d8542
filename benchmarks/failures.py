"""A benchmark whose requests failed, or answered other than expected, has measured nothing: a
server that answers 4xx fast would "win". Every benchmark checks the answers it times at least
once and exits non-zero, naming what went wrong, when any request failed."""

from __future__ import annotations

import functools
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

Check = Callable[[Any], str | None]


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


def check_answer(url: str, body: str | None, check: Check | None = None) -> Any:
    """Send the request a benchmark is about to time once; it must answer 200 with JSON that
    `check` accepts (it returns what is wrong, or None). Returns the decoded answer."""
    request = urllib.request.Request(
        url,
        data=None if body is None else body.encode(),
        headers={"Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    require(status == 200, f"{url} answered {status}: {raw[:300]!r}")
    try:
        answer = json.loads(raw)
    except ValueError as exc:
        raise BenchmarkFailed(f"{url} answered no JSON: {raw[:300]!r}") from exc
    problem = check(answer) if check is not None else None
    require(problem is None, f"{url}: {problem}")
    return answer


def has_prediction(answer: Any) -> str | None:
    """A single-row answer of /predict (ours and the baselines alike)."""
    if isinstance(answer, dict) and "prediction" in answer:
        return None
    return f"no prediction in {str(answer)[:200]}"


def has_predictions(rows: int) -> Check:
    def check(answer: Any) -> str | None:
        predictions = answer.get("predictions") if isinstance(answer, dict) else None
        if isinstance(predictions, list) and len(predictions) == rows:
            return None
        return f"expected {rows} predictions in {str(answer)[:200]}"

    return check
