"""Single-row answers written by the column (app.predlog.singles) read exactly as the general
way writes each line (app.predlog.events.record): same fields, order and values."""

from __future__ import annotations

import dataclasses
import gc
import json
import weakref
from pathlib import Path

import numpy as np
import orjson
import pytest
from onnx_factories import write_classifier, write_regressor

from app.predlog.answers import AnswerList, RecentAnswers
from app.predlog.events import Event, Redactor, record
from app.predlog.files import PREFIX, FileSink
from app.predlog.log import LINE_OPTIONS
from app.predlog.singles import SingleRows, _values
from ml.config import ModelConfig
from ml.model import LoadedModel, load_model
from ml.outputs import Predictions
from ml.served import Served

ODD_NAMES = ['a "quoted" name', "100% sure %s", "naïve\\path", "x"]
# Times across a second's end, request ids of every character a caller's id may hold.
TIMES = [1_790_000_000.998, 1_790_000_000.9996, 1_790_000_001.0, 1_790_000_001.25]
IDS = ["abc", "A.b_c:d-e", "0" * 128, "9f8e7d6c"]


def version(tmp_path: Path, kind: str) -> LoadedModel:
    folder = tmp_path / kind / "1"
    if kind == "labelled":  # integer classes named by labels
        meta = {"task": "classification", "features": ODD_NAMES, "labels": ["a", "b", "c"]}
        write_classifier(folder, "logistic", (3, 7, 9), metadata=meta)
    elif kind == "braces":  # class names that look like JSON around the probabilities
        meta = {"task": "classification", "labels": ["},{", '{"p": 1}', "a,b:c"]}
        write_classifier(folder, "logistic", (3, 7, 9), metadata=meta)
    elif kind == "integer":  # integer classes, answered as numbers
        write_classifier(folder, "forest", (3, 7, 9), metadata={"task": "classification"})
    elif kind == "strings":
        write_classifier(folder, "forest", ("no", "yes"), metadata={"task": "classification"})
    else:
        write_regressor(folder)
    return load_model(kind, 1, folder, ModelConfig())


def answered(model: LoadedModel, rows: np.ndarray) -> list[Event]:
    (name,) = (spec.name for spec in model.signature.inputs)
    events = []
    for index, row in enumerate(rows):
        arrays = {name: row.reshape(1, -1).astype(np.float32)}
        predictions = model.decode_outputs(model.session.run(None, arrays))
        note = Served(model=model, arrays=arrays, predictions=predictions)
        seconds = 0.000_123_4 * (index + 1) ** 3
        at = TIMES[index % len(TIMES)]
        events.append(Event(note, IDS[index % len(IDS)], "http", "/predict", 200, seconds, at, 1))
    return events


def by_column(events: list[Event]) -> SingleRows:
    first = events[0].note
    assert first.model is not None and first.arrays and first.predictions is not None
    (matrix,) = first.arrays.values()
    assert SingleRows.fits(first.model, matrix, first.predictions)
    singles = SingleRows(first.model, "http", "/predict", 200, matrix.dtype, True)
    if first.predictions.probabilities is None:
        singles = SingleRows(first.model, "http", "/predict", 200, matrix.dtype, False)
    for event in events:
        assert event.note.arrays is not None and event.note.predictions is not None
        (matrix,) = event.note.arrays.values()
        assert singles.add(
            event.at, event.request_id, event.seconds, matrix, event.note.predictions
        )
    return singles


@pytest.mark.parametrize("kind", ["labelled", "braces", "integer", "strings", "regressor"])
def test_lines_by_column_equal_the_general_way(tmp_path, kind):
    model = version(tmp_path, kind)
    width = len(model.signature.feature_names)
    rng = np.random.default_rng(7)
    rows = rng.normal(3.0, 2.0, size=(40, width))
    rows[3, 1] = np.nan  # written as null, as the general way writes it
    rows[5, 0] = -0.0
    events = answered(model, rows)
    expected = b"".join(
        orjson.dumps(record(e, Redactor(None)), option=LINE_OPTIONS) for e in events
    )
    written = by_column(events).lines()
    assert written.splitlines() == expected.splitlines()
    first = json.loads(written.splitlines()[0])
    assert list(first["inputs"]) == list(model.signature.feature_names)


def test_an_answer_that_does_not_fit_is_left_for_the_general_way(tmp_path):
    model = version(tmp_path, "labelled")
    (event,) = answered(model, np.ones((1, 4)))
    singles = by_column([event])
    note = event.note
    assert note.arrays is not None and note.predictions is not None
    (matrix,) = note.arrays.values()
    two_rows = np.vstack([matrix, matrix])
    assert not singles.add(0.0, "x", 0.1, two_rows, note.predictions)
    assert not singles.add(0.0, "x", 0.1, matrix.astype(np.float64), note.predictions)
    assert not singles.add(0.0, "x", 0.1, np.asarray(matrix[0, 0]), note.predictions)  # 0-d
    no_probabilities = Predictions(predictions=note.predictions.predictions)
    assert not singles.add(0.0, "x", 0.1, matrix, no_probabilities)
    labels = note.predictions.predictions
    one_class = Predictions(predictions=labels, probabilities=[{"a": 1.0}])
    assert not singles.add(0.0, "x", 0.1, matrix, one_class)
    two_labels = Predictions(predictions=labels * 2, probabilities=note.predictions.probabilities)
    assert not singles.add(0.0, "x", 0.1, matrix, two_labels)
    assert len(singles) == 1
    assert len(singles.lines().splitlines()) == 1


def test_a_row_that_numpy_holds_with_gaps_is_kept_by_its_values(tmp_path):
    model = version(tmp_path, "labelled")
    (event,) = answered(model, np.ones((1, 4)))
    singles = by_column([event])
    note = event.note
    assert note.predictions is not None
    wide = np.arange(8, dtype=np.float32).reshape(1, 8)
    strided = wide[:, ::2]  # every other value: not contiguous in memory
    assert not strided.flags.c_contiguous
    assert singles.add(0.0, "x", 0.1, strided, note.predictions)
    second = json.loads(singles.lines().splitlines()[1])
    assert list(second["inputs"].values()) == [[0.0], [2.0], [4.0], [6.0]]


def test_versions_that_redact_are_not_kept_by_column(tmp_path):
    model = version(tmp_path, "labelled")
    (event,) = answered(model, np.ones((1, 4)))
    note = event.note
    assert note.arrays is not None and note.predictions is not None
    (matrix,) = note.arrays.values()
    assert SingleRows.fits(model, matrix, note.predictions)
    redacting = dataclasses.replace(model, metadata={"redact": ["x"]})
    assert not SingleRows.fits(redacting, matrix, note.predictions)


@pytest.mark.parametrize(
    "values",
    [
        ["a", 'say "hi", ok', "},{", "\\", '","', "ünï", ""],
        [1, 2.5, -3, 1e300, float("nan")],
        [{"y0": 1.5, "y1": -2.0}, {"y0": 0.0, "y1": 3.25}],
        [True, False],
        [[1, 2], [3]],
    ],
    ids=["strings", "numbers", "targets", "booleans", "lists"],
)
def test_each_value_is_written_as_json_alone_would_write_it(values):
    assert _values(values) == [orjson.dumps(v) for v in values]


def test_a_payload_of_many_lines_rotates_between_lines(tmp_path):
    sink = FileSink(tmp_path, queue_rows=100, max_bytes=100, max_age_s=3600, max_files=100)
    lines = [b'{"n":%d,"pad":"%s"}\n' % (i, b"x" * 30) for i in range(10)]
    sink.write([b"".join(lines[:7]), b"".join(lines[7:])], 10)
    sink.close()
    files = sorted(tmp_path.glob(f"{PREFIX}*"))
    assert sink.written == 10
    assert all(f.stat().st_size <= 100 for f in files)
    assert b"".join(f.read_bytes() for f in files) == b"".join(lines)


def test_payloads_of_many_lines_are_counted_line_by_line_written_or_dropped(tmp_path):
    sink = FileSink(tmp_path, queue_rows=10, max_bytes=1 << 20, max_age_s=3600, max_files=10)
    lines = [b'{"n":%d}\n' % i for i in range(6)]
    sink.offer(b"".join(lines), rows=6, events=6)
    sink.offer(b"".join(lines), rows=6, events=6)  # 12 rows would pass the queue's 10

    sink.start()
    sink.stop(5.0)

    assert (sink.written, sink.dropped, sink.failed) == (6, 6, 0)
    (file,) = tmp_path.glob(f"{PREFIX}*")
    assert file.read_bytes() == b"".join(lines)


def test_recent_answers_keep_at_least_the_last_capacity_and_find_ids_added_late(tmp_path):
    model = version(tmp_path, "labelled")
    book = RecentAnswers(capacity=5)
    blocks = []
    for turn in range(4):
        block = AnswerList()
        book.add(block)
        blocks.append(block)
        for i in range(3):
            block.add(f"t{turn}-{i}", (model, f"p{turn}-{i}", None))
        assert book.get(f"t{turn}-0") == (model, f"p{turn}-0", None)
        block.add(f"late{turn}", (model, "late", None))  # added after the index was built
        assert book.get(f"late{turn}") == (model, "late", None)
        book.trim()
    # Four answers a block: the last two blocks hold 8 >= 5, the third from last goes.
    assert len(book) == 8
    assert book.get("t1-0") is None and book.get("late1") is None
    assert book.get("t2-2") == (model, "p2-2", None)
    # An id given again is the newer answer's, and stays when the older block goes.
    again = AnswerList()
    book.add(again)
    again.add("t3-1", (model, "newer", None))
    assert book.get("t3-1") == (model, "newer", None)
    filler = AnswerList()
    book.add(filler)
    for i in range(4):
        filler.add(f"f{i}", (model, None, None))
    book.trim()  # 1 + 4 newer than the block of turn 3: it goes, with its older "t3-1"
    assert len(book) == 5
    assert book.get("t3-0") is None
    assert book.get("t3-1") == (model, "newer", None)


class _Answers(AnswerList):
    """An AnswerList a test can hold a weak reference to."""

    __slots__ = ("__weakref__",)


def test_recent_answers_hold_no_dropped_block_whether_feedback_came_or_not(tmp_path):
    model = version(tmp_path, "labelled")
    for looked_up in (False, True):
        book = RecentAnswers(capacity=10)
        first = _Answers()
        book.add(first)
        first.add("first", (model, "p", None))
        gone = weakref.ref(first)
        del first
        if looked_up:
            assert book.get("first") == (model, "p", None)
        for turn in range(50):  # turns with answers and no feedback
            book.trim()
            block = AnswerList()
            book.add(block)
            for i in range(5):
                block.add(f"t{turn}-{i}", (model, "p", None))
        book.trim()
        gc.collect()
        assert gone() is None, looked_up  # dropped, and nothing of the book keeps it
        assert book.get("first") is None
        assert 10 <= len(book) <= 15
