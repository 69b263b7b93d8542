"""Text pipelines: a vectorizer on one string column, and a graph that loads on any machine.

skl2onnx writes `locale="en_US.UTF-8"` into the `StringNormalizer` that lowercases documents,
and onnxruntime fails to load the graph where that locale is not installed (slim images, `LANG=C`
machines); without the attribute it falls back to the same locale. The locale only decides how
letters outside ASCII are lowercased, and skl2onnx's tokenizer only keeps ASCII letters (it writes
`\\w` as `[a-zA-Z0-9_]`), so the tool writes "C", which every C library has. A token pattern of
the user's that names other letters gets "C.UTF-8", which lowercases them as Python does and is
built into glibc 2.35 and later (Debian, Ubuntu, the project's image) but not into musl (Alpine).
"""

from __future__ import annotations

from typing import Any

import onnx
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.pipeline import Pipeline

__all__ = ["ASCII_LOCALE", "UNICODE_LOCALE", "portable_locale", "text_vectorizer"]

ASCII_LOCALE = "C"
UNICODE_LOCALE = "C.UTF-8"


def text_vectorizer(estimator: Any) -> CountVectorizer | None:
    """The vectorizer a pipeline starts with (TfidfVectorizer is a CountVectorizer), if any."""
    first = estimator
    while isinstance(first, Pipeline):
        first = first.steps[0][1]
    return first if isinstance(first, CountVectorizer | TfidfVectorizer) else None


def portable_locale(model: onnx.ModelProto) -> None:
    """Set, in place, the locale of every StringNormalizer to one onnxruntime can always use."""
    patterns = [
        text
        for node in model.graph.node
        if node.op_type == "Tokenizer"
        for attribute in node.attribute
        for text in [attribute.s, *attribute.strings]
    ]
    locale = ASCII_LOCALE if all(p.isascii() for p in patterns) else UNICODE_LOCALE
    for node in model.graph.node:
        if node.op_type != "StringNormalizer":
            continue
        kept = [a for a in node.attribute if a.name != "locale"]
        del node.attribute[:]
        node.attribute.extend([*kept, onnx.helper.make_attribute("locale", locale)])
