"""The order of a round in the benchmarks that alternate what they compare."""

from __future__ import annotations

from benchmarks.options import alternating


def test_every_other_round_runs_the_names_in_reverse():
    names = {"plain": 1, "shadow": 2, "drift": 3}  # a dict gives its keys, as servers do
    orders = [alternating(names, i) for i in range(4)]
    assert orders == [
        ["plain", "shadow", "drift"],
        ["drift", "shadow", "plain"],
        ["plain", "shadow", "drift"],
        ["drift", "shadow", "plain"],
    ]
    assert list(names) == ["plain", "shadow", "drift"]
