"""What the benchmarks which alternate servers (or ways) over rounds share: their command-line
options, and the order of each round."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def rounds_parser(doc: str, *, rounds: int, seconds: float) -> argparse.ArgumentParser:
    """A parser for a benchmark described by `doc` (its first line is the description) with
    `--rounds`, `--seconds` (of each measured run) and `--connections`, with these defaults."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--seconds", type=float, default=seconds)
    parser.add_argument("--connections", type=int, default=8)
    return parser


def alternating(names: Iterable[T], round_index: int) -> list[T]:
    """`names` in their order on even rounds and reversed on odd ones, so that none is always
    the one that runs first (or right after another stopped)."""
    order = list(names)
    return order if round_index % 2 == 0 else order[::-1]
