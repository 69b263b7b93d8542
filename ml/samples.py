"""`samples.json`: rows a version must answer as the data scientist saw at export, checked after
warm-up and before the version serves (the README's "Samples checked
before a version serves").

    {"instances": [row, ...],
     "expected": {"predictions": [...], "probabilities": [{...}, ...]},  # or {"outputs": {...}}
     "rtol": 1e-4, "atol": 1e-5}

`instances` are rows as /predict/batch takes them and `expected` is what it answers for them.
Classes must be equal; every number within `atol + rtol * |expected|`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml.outputs import Predictions
from ml.store import SAMPLES_FILE

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5
ANSWER_KEYS = ("predictions", "probabilities", "outputs")

Where = tuple[str | int, ...]


class SamplesError(Exception):
    """samples.json cannot be read, or the version does not answer it as expected."""


@dataclass(frozen=True, slots=True)
class Samples:
    """The rows of a samples.json and the answer expected for them."""

    instances: list[Any]
    expected: dict[str, Any]
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL


def _tolerance(data: dict[str, Any], key: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise SamplesError(f"{SAMPLES_FILE}: {key} must be a number >= 0, not {value!r}")
    return float(value)


def read_samples(version_dir: Path) -> Samples | None:
    """The samples of a version folder, None without the file; SamplesError if unreadable."""
    path = version_dir / SAMPLES_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SamplesError(f"{SAMPLES_FILE}: cannot read: {exc}") from exc
    if not isinstance(data, dict):
        raise SamplesError(f"{SAMPLES_FILE}: must hold a JSON object")
    unknown = sorted(set(data) - {"instances", "expected", "rtol", "atol"})
    if unknown:
        raise SamplesError(f"{SAMPLES_FILE}: unknown keys {', '.join(unknown)}")
    instances, expected = data.get("instances"), data.get("expected")
    if not isinstance(instances, list) or not instances:
        raise SamplesError(f"{SAMPLES_FILE}: instances must be a non-empty list of rows")
    if not isinstance(expected, dict) or not set(expected) & {"predictions", "outputs"}:
        raise SamplesError(
            f"{SAMPLES_FILE}: expected must be an object with predictions (and probabilities) "
            "or outputs, as /predict/batch answers"
        )
    unknown = sorted(set(expected) - set(ANSWER_KEYS))
    if unknown:
        raise SamplesError(f"{SAMPLES_FILE}: expected has unknown keys {', '.join(unknown)}")
    for key in ("predictions", "probabilities"):
        value = expected.get(key)
        if value is not None and (not isinstance(value, list) or len(value) != len(instances)):
            raise SamplesError(
                f"{SAMPLES_FILE}: expected {key} must list one answer per instance "
                f"({len(instances)})"
            )
    return Samples(
        instances,
        expected,
        _tolerance(data, "rtol", DEFAULT_RTOL),
        _tolerance(data, "atol", DEFAULT_ATOL),
    )


def _differences(
    got: Any, want: Any, path: Where, exact: bool, samples: Samples
) -> Iterator[tuple[Where, str, str]]:
    """(where, what the model gave, what was expected) for each value that differs."""
    if isinstance(want, dict) and isinstance(got, dict):
        if list(got) != list(want) and set(got) != set(want):
            yield path, "has keys " + ", ".join(map(str, got)), ", ".join(map(str, want))
            return
        for key in want:
            yield from _differences(got[key], want[key], (*path, key), exact, samples)
    elif isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            yield path, f"has {len(got)} values", f"{len(want)}"
            return
        for index, (g, w) in enumerate(zip(got, want, strict=True)):
            yield from _differences(g, w, (*path, index), exact, samples)
    elif _is_number(want) and _is_number(got) and not exact:
        if not math.isclose(
            got, want, rel_tol=0.0, abs_tol=samples.atol + samples.rtol * abs(want)
        ):
            yield path, repr(got), repr(want)
    elif type(got) is not type(want) or got != want:
        yield path, repr(got), repr(want)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _where(path: Where) -> tuple[int | None, str]:
    """The row and the field of a difference, as messages name them: row 3,
    probabilities.setosa; row 0, prediction; row 2, outputs.y[1]."""
    key, rest = path[0], list(path[1:])
    if key == "outputs" and rest:
        key, rest = f"outputs.{rest[0]}", rest[1:]
        row = rest.pop(0) if rest and isinstance(rest[0], int) else None
    else:
        row = rest.pop(0) if rest and isinstance(rest[0], int) else None
        key = "prediction" if key == "predictions" and row is not None else key
    field = str(key)
    for part in rest:
        field += f"[{part}]" if isinstance(part, int) else f".{part}"
    return row if isinstance(row, int) else None, field


def check(samples: Samples, answer: Predictions) -> None:
    """Raise SamplesError naming the first row and field where `answer` differs."""
    classifier = answer.probabilities is not None
    found: list[tuple[Where, str, str]] = []
    for key in ANSWER_KEYS:
        want = samples.expected.get(key)
        if want is None:
            continue
        got = getattr(answer, key)
        if got is None:
            given = [k for k in ANSWER_KEYS if getattr(answer, k) is not None]
            raise SamplesError(
                f"{SAMPLES_FILE}: expected {key}, but the model answers {' and '.join(given)}"
            )
        exact = classifier and key == "predictions"
        found.extend(_differences(got, want, (key,), exact, samples))
    if not found:
        return
    path, got_text, want_text = found[0]
    row, field = _where(path)
    rows = {_where(p)[0] for p, _, _ in found}
    where = f"{SAMPLES_FILE} row {row}" if row is not None else SAMPLES_FILE
    more = f" ({len(rows)} rows differ)" if len(rows) > 1 else ""
    raise SamplesError(f"{where}: {field} {got_text}, expected {want_text}{more}")
