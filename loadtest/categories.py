"""The values a string input can take, read from the model's ONNX graph where it is at hand.

A string column is turned into numbers by a OneHotEncoder (`cats_strings`) or a LabelEncoder
(`keys_strings`) somewhere downstream of its input. A value outside those lists is ignored or
refused, depending on how the model was exported, so generated rows draw from them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

ENCODER_ATTRIBUTES = {"OneHotEncoder": "cats_strings", "LabelEncoder": "keys_strings"}


def string_categories(model_path: Path, inputs: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """For each of `inputs`, the strings of the first encoders downstream of it (none found:
    left out)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    found = {}
    for input_name in inputs:
        values: list[str] = []
        seen: set[str] = set()
        frontier = [input_name]
        while frontier:
            tensor = frontier.pop()
            for node in consumers.get(tensor, ()):
                attribute = ENCODER_ATTRIBUTES.get(node.op_type)
                strings = [
                    s.decode() for a in node.attribute if a.name == attribute for s in a.strings
                ]
                if strings:
                    values += [s for s in strings if s not in values]
                    continue  # what the encoder outputs is numbers: look no further
                for out in node.output:
                    if out not in seen:
                        seen.add(out)
                        frontier.append(out)
        if values:
            found[input_name] = tuple(values)
    return found
