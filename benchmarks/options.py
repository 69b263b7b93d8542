"""The command-line options that the benchmarks which alternate servers over rounds share."""

from __future__ import annotations

import argparse


def rounds_parser(doc: str, *, rounds: int, seconds: float) -> argparse.ArgumentParser:
    """A parser for a benchmark described by `doc` (its first line is the description) with
    `--rounds`, `--seconds` (of each measured run) and `--connections`, with these defaults."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--seconds", type=float, default=seconds)
    parser.add_argument("--connections", type=int, default=8)
    return parser
