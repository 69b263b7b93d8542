"""ml.model: loading each kind of model, predictions against onnxruntime's own, load errors."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx_factories import (
    COLUMNS_LABELS,
    IRIS_FEATURES,
    IRIS_LABELS,
    columns_rows,
    diabetes_rows,
    iris_rows,
    write_columns_pipeline,
    write_double_input_model,
    write_empty,
    write_garbage,
    write_graph,
    write_int64_input_model,
    write_iris_classifier,
    write_raw_model,
    write_regressor,
)

from ml.config import ModelConfig, RuntimeConfig
from ml.errors import InferenceFailed, InvalidInput
from ml.model import LoadedModel, ModelLoadError, direct_run, load_model
from ml.observer import ServingObserver
from ml.outputs import Predictions
from ml.signature import OutputKind


def load(folder: Path, config: ModelConfig | None = None, name: str = "m") -> LoadedModel:
    return load_model(name, 1, folder, config or ModelConfig())


def reference(folder: Path, feed: dict[str, np.ndarray]) -> list[Any]:
    """What a fresh onnxruntime session of the same file answers."""
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def predict(model: LoadedModel, rows: list[Any]) -> Predictions:
    return asyncio.run(model.predict(rows, ("instances",)))


# -- each kind of model ------------------------------------------------------------------------


def test_iris_classifier(tmp_path: Path) -> None:
    folder = write_iris_classifier(tmp_path / "1")
    model = load_model("iris", 1, folder, ModelConfig())
    assert (model.name, model.version, model.path) == ("iris", 1, folder)
    assert model.metadata["task"] == "classification"
    assert model.signature.output_kind is OutputKind.CLASSIFIER
    assert model.labels == IRIS_LABELS
    assert model.inline_max_rows >= 1
    rows = iris_rows(9)
    result = predict(model, rows)
    label, probabilities = reference(folder, {"input": np.array(rows, dtype=np.float32)})
    assert result.predictions == label.tolist()
    assert set(result.predictions) == set(IRIS_LABELS)
    assert result.outputs is None
    assert result.probabilities is not None
    assert [list(p) for p in result.probabilities] == [list(IRIS_LABELS)] * 9
    got = np.array([[p[k] for k in IRIS_LABELS] for p in result.probabilities])
    np.testing.assert_allclose(got, probabilities, rtol=1e-6)


def test_served_runs_skip_onnxruntime_python_layer(tmp_path: Path, monkeypatch) -> None:
    folder = write_iris_classifier(tmp_path / "1")
    model = load(folder)
    rows = iris_rows(3)
    want = predict(model, rows)

    def wrapper_called(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("served runs go through onnxruntime's Python layer")

    monkeypatch.setattr(ort.InferenceSession, "run", wrapper_called)
    got = predict(model, rows)

    assert got == want  # answered as before the layer was patched: it was never called


def test_direct_run_falls_back_to_the_session_run_without_a_binding() -> None:
    class Plain:
        def run(self, *args: Any) -> list[Any]:
            return ["ran"]

    session = Plain()

    assert direct_run(session)([], {}, None) == ["ran"]  # type: ignore[arg-type]


def test_named_rows_predict_like_positional_ones(tmp_path: Path) -> None:
    model = load(write_iris_classifier(tmp_path))
    rows = iris_rows(4)
    named = [dict(zip(IRIS_FEATURES, row, strict=True)) for row in rows]
    assert predict(model, named) == predict(model, rows)


def test_classifier_without_labels_keys_probabilities_by_column(tmp_path: Path) -> None:
    folder = write_iris_classifier(tmp_path, metadata=False)
    model = load(folder)
    result = predict(model, iris_rows(3))
    assert result.probabilities is not None
    assert [len(p) for p in result.probabilities] == [3, 3, 3]
    assert result.predictions is not None
    assert set(result.predictions) <= set(IRIS_LABELS)


@pytest.mark.parametrize("metadata", [True, False])
def test_zipmap_classifier_gets_labels_from_the_warm_up(tmp_path: Path, metadata: bool) -> None:
    folder = write_iris_classifier(tmp_path, zipmap=True, metadata=metadata)
    model = load(folder)
    assert model.signature.output_kind is OutputKind.CLASSIFIER_ZIPMAP
    assert model.labels == IRIS_LABELS
    rows = iris_rows(6)
    result = predict(model, rows)
    label, maps = reference(folder, {"input": np.array(rows, dtype=np.float32)})
    assert result.predictions == label.tolist()
    assert result.probabilities is not None
    for got, want in zip(result.probabilities, maps, strict=True):
        assert list(got) == list(want)
        np.testing.assert_allclose(list(got.values()), list(want.values()), rtol=1e-6)


def test_regressor(tmp_path: Path) -> None:
    folder = write_regressor(tmp_path)
    model = load(folder)
    assert model.signature.output_kind is OutputKind.REGRESSOR
    rows = diabetes_rows(7)
    result = predict(model, rows)
    (want,) = reference(folder, {"input": np.array(rows, dtype=np.float32)})
    assert result.probabilities is None
    np.testing.assert_allclose(result.predictions, want[:, 0], rtol=1e-6)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_columns_pipeline(tmp_path: Path, task: str) -> None:
    folder = write_columns_pipeline(tmp_path, task=task)
    model = load(folder)
    rows = columns_rows(6)
    result = predict(model, rows)
    feed = {
        "color": np.array([[r["color"]] for r in rows], dtype=object),
        "size": np.array([[r["size"]] for r in rows], dtype=np.float32),
        "count": np.array([[r["count"]] for r in rows], dtype=np.int64),
    }
    want = reference(folder, feed)
    if task == "classification":
        assert result.predictions == want[0].tolist()
        assert set(result.predictions) == set(COLUMNS_LABELS)
        assert result.probabilities is not None
        got = np.array([[p[k] for k in COLUMNS_LABELS] for p in result.probabilities])
        np.testing.assert_allclose(got, want[1], rtol=1e-6)
    else:
        np.testing.assert_allclose(result.predictions, want[0][:, 0], rtol=1e-6)


def test_raw_model_returns_outputs_by_name(tmp_path: Path) -> None:
    folder = write_raw_model(tmp_path)
    model = load(folder)
    rows = [[1.0, 2.0, 3.0], [-1.0, 0.5, 0.25]]
    result = predict(model, rows)
    assert result.predictions is None
    assert result.outputs == {"y": [[2.0, 4.0, 6.0], [-2.0, 1.0, 0.5]], "s": [[6.0], [-0.25]]}
    y, s = reference(folder, {"x": np.array(rows, dtype=np.float32)})
    assert result.outputs["y"] == y.tolist()
    assert result.outputs["s"] == s.tolist()
    assert {name: values[1] for name, values in result.outputs.items()} == {
        "y": [-2.0, 1.0, 0.5],
        "s": [-0.25],
    }


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_fixed_batch_model_runs_every_row_in_order(tmp_path: Path, batch: int) -> None:
    model = load(write_raw_model(tmp_path, batch=batch))
    assert model.signature.fixed_batch_size == batch
    rows = [[float(i), float(i) + 0.5, -float(i)] for i in range(5)]
    result = predict(model, rows)
    assert result.outputs is not None
    assert result.outputs["y"] == [[2 * v for v in row] for row in rows]
    assert result.outputs["s"] == [[sum(row)] for row in rows]
    one = predict(model, rows[:1])
    assert one.outputs == {"y": [[0.0, 1.0, 0.0]], "s": [[0.5]]}


def test_fixed_batch_model_given_as_many_rows_as_it_takes(tmp_path: Path) -> None:
    model = load(write_raw_model(tmp_path, batch=2))
    result = predict(model, [[1, 1, 1], [2, 2, 2]])
    assert result.outputs == {"y": [[2.0] * 3, [4.0] * 3], "s": [[3.0], [6.0]]}


def test_double_input_model(tmp_path: Path) -> None:
    # Hand-built, one [N, 1] output and no metadata.json: answered by output name.
    model = load(write_double_input_model(tmp_path))
    rows = [[0.1, 0.2], [1e300, 1e300]]
    result = predict(model, rows)
    assert result.predictions is None
    assert result.outputs == {"y": [[0.1 + 0.2], [2e300]]}  # float64 all the way


def test_hand_built_model_is_a_regressor_when_metadata_says_so(tmp_path: Path) -> None:
    folder = write_double_input_model(tmp_path)
    (folder / "metadata.json").write_text('{"task": "regression"}')
    model = load(folder)
    assert model.signature.output_kind is OutputKind.REGRESSOR
    assert predict(model, [[0.1, 0.2], [1e300, 1e300]]).predictions == [0.1 + 0.2, 2e300]


def test_int64_input_model(tmp_path: Path) -> None:
    model = load(write_int64_input_model(tmp_path))
    assert predict(model, [[1, 2], [30, -4]]).outputs == {"y": [[3.0], [26.0]]}
    with pytest.raises(InvalidInput):
        predict(model, [[1.5, 2]])


def test_thread_and_inline_runs_agree(tmp_path: Path) -> None:
    model = load(write_iris_classifier(tmp_path))
    rows = iris_rows(20)
    inline = predict(replace(model, inline_max_rows=1000), rows)
    assert predict(replace(model, inline_max_rows=0), rows) == inline


def test_invalid_rows_raise_before_running(tmp_path: Path) -> None:
    model = load(write_iris_classifier(tmp_path))
    with pytest.raises(InvalidInput, match="expects 4 features"):
        asyncio.run(model.predict([[1.0, 2.0, 3.0]], ("features",)))


# -- session options ---------------------------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 3])
def test_intra_op_threads_come_from_the_config(tmp_path: Path, threads: int) -> None:
    config = ModelConfig(onnxruntime=RuntimeConfig(intra_op_num_threads=threads))
    model = load(write_iris_classifier(tmp_path), config)
    assert model.config is config
    assert model.session.get_session_options().intra_op_num_threads == threads


def test_default_config_uses_one_thread(tmp_path: Path) -> None:
    model = load(write_iris_classifier(tmp_path))
    assert model.session.get_session_options().intra_op_num_threads == 1


# -- load errors -------------------------------------------------------------------------------


def test_missing_model_file(tmp_path: Path) -> None:
    tmp_path.joinpath("metadata.json").write_text("{}")
    with pytest.raises(ModelLoadError, match=r"model\.onnx is missing"):
        load(tmp_path)


def test_missing_version_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"model\.onnx is missing"):
        load(tmp_path / "nowhere")


@pytest.mark.parametrize("writer", [write_garbage, write_empty])
def test_file_onnxruntime_cannot_load(tmp_path: Path, writer: Any) -> None:
    with pytest.raises(ModelLoadError, match=r"^model\.onnx: onnxruntime cannot load it: \S"):
        load(writer(tmp_path))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"metadata\.json: cannot read"),
        ("[1, 2]", r"metadata\.json: must hold a JSON object"),
        ('{"features": "a,b,c,d"}', r"metadata\.json: 'features' must be a list of names"),
        ('{"features": [1.5, 2.5, 3.5, 4.5]}', r"'features' must be a list of names"),
        ('{"labels": {"0": "setosa"}}', r"metadata\.json: 'labels' must be a list of names"),
        ('{"features": ["a", "b", "c"]}', r"lists 3 features but the model's input"),
        ('{"labels": ["a", "b"]}', r"lists 2 labels but the model has 3 classes"),
        ('{"task": "ranking"}', r"task 'ranking'"),
        ('{"targets": "y"}', r"'targets' must be a list of distinct names"),
        ('{"targets": ["y", "y"]}', r"'targets' must be a list of distinct names"),
        ('{"targets": []}', r"'targets' must be a list of distinct names"),
        ('{"missing_values": "yes"}', r"'missing_values' must be true or false"),
        ('{"missing_string": null}', r"'missing_string' must be a string"),
        ('{"task": "clustering"}', r"task clustering needs two outputs: an int64 cluster"),
        ('{"targets": ["a", "b"]}', r"lists 2 targets but the model's outputs are not one"),
    ],
)
def test_bad_metadata(tmp_path: Path, content: str, message: str) -> None:
    folder = write_iris_classifier(tmp_path)
    (folder / "metadata.json").write_text(content)
    with pytest.raises(ModelLoadError, match=message):
        load(folder)


def test_metadata_that_is_not_utf8(tmp_path: Path) -> None:
    folder = write_iris_classifier(tmp_path)
    (folder / "metadata.json").write_bytes(b'{"description": "\xff"}')
    with pytest.raises(ModelLoadError, match=r"metadata\.json: cannot read"):
        load(folder)


def test_unservable_signature(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "three_d",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 2])],
    )
    with pytest.raises(ModelLoadError, match="served inputs are 2-D"):
        load(write_graph(tmp_path, graph))


def test_warm_up_failure(tmp_path: Path) -> None:
    # Declares a dynamic batch but reshapes to one row: loads, then fails on the 8 warm-up rows.
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "one_row_only",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        initializer=[helper.make_tensor("shape", TensorProto.INT64, [2], [1, 3])],
    )
    with pytest.raises(ModelLoadError, match="warm-up inference failed: "):
        load(write_graph(tmp_path, graph))


def test_warm_up_outputs_that_do_not_fit_the_signature(tmp_path: Path) -> None:
    # A classifier whose probability width follows a dynamic input width, so the count of labels
    # can only be checked on real outputs.
    graph = helper.make_graph(
        [
            helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0),
            helper.make_node("Softmax", ["x"], ["probabilities"], axis=1),
        ],
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "F"])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", "C"]),
        ],
    )
    with pytest.raises(ModelLoadError, match="lists 2 labels but the model has 3 classes"):
        metadata = {"features": ["a", "b", "c"], "labels": ["yes", "no"]}
        load(write_graph(tmp_path, graph, metadata))


# -- inference failures and closing ------------------------------------------------------------


class GatedSession:
    """Wraps a session; each run waits until the test opens the gate (or raises if told to)."""

    def __init__(self, session: ort.InferenceSession, fail: bool = False) -> None:
        self.session = session
        self.fail = fail
        self.gate = threading.Event()
        self.started = threading.Event()

    def run(self, names: Any, feed: Any, options: Any = None) -> Any:
        self.started.set()
        if not self.gate.wait(5):
            raise TimeoutError("the test never opened the gate")
        if self.fail:
            raise RuntimeError("boom")
        return self.session.run(names, feed, options)


def test_inference_failure_is_wrapped(tmp_path: Path) -> None:
    model = load(write_raw_model(tmp_path))
    with pytest.raises(InferenceFailed, match="model m version 1 failed to run on valid input"):
        model.run({"x": np.zeros((2, 5), dtype=np.float32)}, 2)


def test_close_waits_for_in_flight_predictions(tmp_path: Path) -> None:
    model = load(write_iris_classifier(tmp_path))
    gated = GatedSession(model.session)
    # Run in a worker thread, as a large batch would.
    model = replace(model, session=gated, inline_max_rows=0)

    async def scenario() -> None:
        prediction = asyncio.create_task(model.predict(iris_rows(3), ("instances",)))
        assert await asyncio.to_thread(gated.started.wait, 5)
        closing = asyncio.create_task(model.close())
        await asyncio.sleep(0.05)
        assert not closing.done()  # the run is still in flight
        gated.gate.set()
        result = await prediction
        await asyncio.wait_for(closing, 5)
        assert result.predictions is not None
        assert len(result.predictions) == 3

    asyncio.run(scenario())


def test_close_without_in_flight_predictions_returns_at_once(tmp_path: Path) -> None:
    model = load(write_iris_classifier(tmp_path))
    predict(model, iris_rows(2))
    started = time.perf_counter()
    asyncio.run(model.close(timeout_s=5))
    assert time.perf_counter() - started < 0.5


def test_close_gives_up_after_its_timeout(tmp_path: Path) -> None:
    model = load(write_iris_classifier(tmp_path))
    gated = GatedSession(model.session)
    model = replace(model, session=gated, inline_max_rows=0)

    async def scenario() -> None:
        prediction = asyncio.create_task(model.predict(iris_rows(2), ("instances",)))
        assert await asyncio.to_thread(gated.started.wait, 5)
        started = time.perf_counter()
        await model.close(timeout_s=0.05)
        assert time.perf_counter() - started < 1
        gated.gate.set()
        await prediction

    asyncio.run(scenario())


def test_failed_run_is_no_longer_in_flight(tmp_path: Path) -> None:
    model = load(write_iris_classifier(tmp_path))
    gated = GatedSession(model.session, fail=True)
    gated.gate.set()
    model = replace(model, session=gated, inline_max_rows=0)

    async def scenario() -> None:
        with pytest.raises(InferenceFailed):
            await model.predict(iris_rows(2), ("instances",))
        await asyncio.wait_for(model.close(timeout_s=5), 0.5)

    asyncio.run(scenario())


class RunRecorder(ServingObserver):
    """An observer that keeps the runs it hears of, and the thread it heard them on."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, int, int]] = []
        self.threads: set[int] = set()

    def ran(self, model: str, version: int, rows: int, seconds: float) -> None:
        self.runs.append((model, version, rows))
        self.threads.add(threading.get_ident())


def test_runs_in_a_thread_are_reported_on_the_loop_even_when_the_request_gave_up(
    tmp_path: Path,
) -> None:
    model = load(write_iris_classifier(tmp_path))
    gated = GatedSession(model.session)
    recorder = RunRecorder()
    # Run in a worker thread, as a large batch would.
    model = replace(model, session=gated, inline_max_rows=0, observer=recorder)

    async def scenario() -> int:
        prediction = asyncio.create_task(model.predict(iris_rows(3), ("instances",)))
        assert await asyncio.to_thread(gated.started.wait, 5)
        prediction.cancel()  # as the request timeout does
        with pytest.raises(asyncio.CancelledError):
            await prediction
        gated.gate.set()
        for _ in range(100):  # the worker thread finishes the run after the request is gone
            if recorder.runs:
                break
            await asyncio.sleep(0.01)
        return threading.get_ident()

    loop_thread = asyncio.run(scenario())
    assert recorder.runs == [("m", 1, 3)]
    assert recorder.threads == {loop_thread}


NESTED_JSON = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("name", ["metadata.json", "samples.json"])
def test_nested_json_fails_with_a_reason(tmp_path: Path, name: str) -> None:
    folder = write_iris_classifier(tmp_path / "1")
    (folder / name).write_text(NESTED_JSON)
    with pytest.raises(ModelLoadError, match=rf"^{name}: nested too deeply to read$"):
        load(folder)


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_model_file_that_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "1"
    folder.mkdir()
    if kind == "fifo":
        os.mkfifo(folder / "model.onnx")  # onnxruntime would block opening it
        expected = "a FIFO"
    else:
        (folder / "model.onnx").mkdir()
        expected = "a folder"
    with pytest.raises(
        ModelLoadError, match=rf"^cannot read the version: model\.onnx is {expected}, not a"
    ):
        load(folder)


def test_model_file_linked_within_its_store(tmp_path: Path) -> None:
    """A link that stays inside the store is followed: the same model, loaded twice."""
    store = tmp_path / "store"
    first = write_iris_classifier(store / "iris" / "1")
    second = store / "iris" / "2"
    second.mkdir()
    for name in ("model.onnx", "metadata.json"):
        (second / name).symlink_to(f"../1/{name}")
    model = load_model("iris", 2, second, ModelConfig(), within=store)
    reference_model = load_model("iris", 1, first, ModelConfig(), within=store)
    rows = iris_rows(4)
    assert model.answer(rows, ("instances",)) == reference_model.answer(rows, ("instances",))
    outside = r"^cannot read the version: \S+ is a link to outside the model store$"
    with pytest.raises(ModelLoadError, match=outside):
        load_model("iris", 2, second, ModelConfig(), within=second)
