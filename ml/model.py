"""One loaded model version: its onnxruntime session, signature, row codec and warm-up."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ml.batching import MicroBatcher
from ml.config import ModelConfig
from ml.drift.counter import DriftCounter
from ml.drift.profile import ProfileError, read_profile
from ml.errors import InferenceFailed, InvalidInput
from ml.files import METADATA_MAX_BYTES, MODEL_MAX_BYTES, check_file, check_folder, read_text
from ml.graph import Classes, read_classes
from ml.observer import ServingObserver
from ml.outputs import Predictions, Vocabulary, VocabularyError, decode
from ml.rows import RowCodec
from ml.samples import Samples, SamplesError, check, read_samples
from ml.served import SERVED
from ml.signature import OutputKind, Signature, SignatureError, derive_signature
from ml.store import METADATA_FILE, MODEL_FILE, SAMPLES_FILE

log = logging.getLogger(__name__)

# A session's run: output names, input arrays by name, run options -> outputs in that order.
SessionRun = Callable[[list[str], Mapping[str, np.ndarray], ort.RunOptions | None], list[Any]]

# Runs estimated to take less than this stay on the event loop: the hop to a worker thread costs
# more than a small forest takes for dozens of rows (README, Performance).
INLINE_BUDGET_S = 250e-6
# The fastest of a few timed runs: one run on a busy machine would overstate the cost.
TIMING_RUNS = 5


class ModelLoadError(Exception):
    """A version could not be loaded or failed its warm-up; the message says why."""


@dataclass(eq=False, slots=True)
class _Traffic:
    """What changes while a version serves: its runs in flight, the wait of an unload for them,
    and the micro-batcher, made on first use (asyncio objects belong to the running loop)."""

    in_flight: int = 0
    drained: asyncio.Event | None = None
    batcher: MicroBatcher | None = None


@dataclass(eq=False, frozen=True, slots=True)
class LoadedModel:
    """A version ready to serve, finished when `load_model` built it: every field is final (a
    changed copy is `dataclasses.replace`'s job). Only its traffic (`_traffic`) changes."""

    name: str
    version: int
    path: Path
    config: ModelConfig
    metadata: Mapping[str, Any]
    signature: Signature
    codec: RowCodec
    session: ort.InferenceSession
    # How a classifier names its classes; None for other models.
    vocabulary: Vocabulary | None = None
    inline_max_rows: int = 1
    # Rows of samples.json this version answered as expected before it served.
    samples_checked: int = 0
    _output_names: list[str] = field(default_factory=list)
    # One for every run: given none, onnxruntime builds a default per call, on the hot path.
    _run_options: ort.RunOptions = field(default_factory=ort.RunOptions)
    # The session's run as every served run calls it (`direct_run`), derived from `session`.
    _session_run: SessionRun = field(init=False, repr=False)
    # Hears of served runs only: the warm-up and samples.json were answered before it was set.
    observer: ServingObserver | None = None
    # Counts served rows by profile bin when the version has a profile.json.
    drift: DriftCounter | None = None

    def __post_init__(self) -> None:
        # Derived here, so that a copy with another session (`replace`) runs that session.
        object.__setattr__(self, "_session_run", direct_run(self.session))

    _traffic: _Traffic = field(default_factory=_Traffic, init=False, repr=False)

    def run(self, arrays: Mapping[str, np.ndarray], n_rows: int) -> list[Any]:
        """One blocking inference on the event loop's thread, reported to the observer."""
        outputs, seconds = self._timed_run(arrays, n_rows)
        if self.observer is not None:
            self.observer.ran(self.name, self.version, n_rows, seconds)
        return outputs

    def _timed_run(self, arrays: Mapping[str, np.ndarray], n_rows: int) -> tuple[list[Any], float]:
        """One blocking inference and how long it took, in any thread; rows are split to fit a
        fixed batch dimension."""
        size = self.signature.fixed_batch_size
        # Timed here rather than by `_clocked_run`: a call less on every request.
        started = time.perf_counter()
        try:
            run = self._session_run
            if size is None or size == n_rows:
                outputs = run(self._output_names, arrays, self._run_options)
            else:
                outputs = self._run_fixed(arrays, n_rows, size)
        except Exception as exc:  # onnxruntime raises several unrelated types
            log.exception("inference failed for %s/%s", self.name, self.version)
            raise InferenceFailed(
                f"model {self.name} version {self.version} failed to run on valid input"
            ) from exc
        return outputs, time.perf_counter() - started

    def _run_fixed(self, arrays: Mapping[str, np.ndarray], n_rows: int, size: int) -> list[Any]:
        run = self._session_run
        parts: list[list[Any]] = []
        for start in range(0, n_rows, size):
            chunk = {name: a[start : start + size] for name, a in arrays.items()}
            short = size - len(next(iter(chunk.values())))
            if short:  # pad with copies of the last row; their outputs are dropped below
                chunk = {
                    n: np.concatenate([a, np.repeat(a[-1:], short, axis=0)])
                    for n, a in chunk.items()
                }
            parts.append(run(self._output_names, chunk, self._run_options))
        joined: list[Any] = []
        for i in range(len(self._output_names)):
            pieces = [p[i] for p in parts]
            if isinstance(pieces[0], np.ndarray) and pieces[0].ndim >= 1:
                joined.append(np.concatenate(pieces)[:n_rows])
            elif isinstance(pieces[0], list):
                joined.append([item for piece in pieces for item in piece][:n_rows])
            else:
                joined.append(pieces[0])
        return joined

    async def infer(self, arrays: Mapping[str, np.ndarray], n_rows: int) -> list[Any]:
        """Run on the event loop when it is cheaper than a thread hop, else in a worker thread."""
        if n_rows <= self.inline_max_rows:
            return self.run(arrays, n_rows)
        return await asyncio.to_thread(
            self._run_in_thread, asyncio.get_running_loop(), arrays, n_rows
        )

    def _run_in_thread(
        self, loop: asyncio.AbstractEventLoop, arrays: Mapping[str, np.ndarray], n_rows: int
    ) -> list[Any]:
        outputs, seconds = self._timed_run(arrays, n_rows)
        if self.observer is not None:
            # Observers are used on the loop's thread only. Reported from here, the run counts
            # even when the request that waited for it was cancelled (timeout) meanwhile.
            with contextlib.suppress(RuntimeError):  # the loop closed: the process is ending
                loop.call_soon_threadsafe(
                    self.observer.ran, self.name, self.version, n_rows, seconds
                )
        return outputs

    def _batcher_for_one_row(self) -> MicroBatcher | None:
        batching = self.config.batching
        if batching is None:
            return None
        traffic = self._traffic
        if traffic.batcher is None:  # made on first use: asyncio objects belong to the loop
            size = batching.max_batch_size
            if self.signature.fixed_batch_size is not None:
                size = min(size, self.signature.fixed_batch_size)
            batcher = MicroBatcher(self.infer, size, batching.max_delay_ms, batching.max_queue_size)
            if self.observer is not None:
                observer, name, version = self.observer, self.name, self.version
                batcher.on_depth = lambda depth: observer.queued(name, version, depth)
            traffic.batcher = batcher
        return traffic.batcher

    def _runs_inline(self, n_rows: int) -> bool:
        """Whether a run of `n_rows` happens right on the event loop, unbatched."""
        return n_rows <= self.inline_max_rows and (n_rows > 1 or self.config.batching is None)

    async def predict(self, rows: Sequence[Any], loc: tuple[str | int, ...]) -> Predictions:
        """Validate `rows`, run them, and decode the outputs; raises InvalidInput for bad rows."""
        note = SERVED.get()
        if note is not None:
            note.model, note.rows = self, rows
        arrays = self.codec.encode(rows, loc)
        n_rows = len(rows)
        if self._runs_inline(n_rows):
            # Nothing awaits between here and the outputs, so no unload can start meanwhile:
            # the run needs no in-flight count, and skips the coroutine layers that cost more.
            raw = self.run(arrays, n_rows)
        else:
            raw = await self._execute(arrays, n_rows)
        if self.drift is not None:
            self.drift.add(arrays, raw, n_rows)
        result = self.decode_outputs(raw)
        if note is not None:
            note.arrays, note.predictions = arrays, result
        return result

    def answer(self, rows: Sequence[Any], loc: tuple[str | int, ...]) -> Predictions:
        """What /predict/batch answers for `rows`, computed in the calling thread, unbatched and
        unobserved: for checks off the request path."""
        arrays = self.codec.encode(rows, loc)
        raw, _ = self._timed_run(arrays, len(rows))
        return self.decode_outputs(raw)

    async def score(self, rows: Sequence[Any], loc: tuple[str | int, ...]) -> Predictions:
        """`rows` answered off the request path (a rollout's shadow): validated and decoded on
        the event loop, run there or in a worker thread as `infer` decides, never batched."""
        arrays = self.codec.encode(rows, loc)
        return self.decode_outputs(await self.infer(arrays, len(rows)))

    def decode_outputs(self, raw: list[Any]) -> Predictions:
        """The answer that this version's raw session outputs (in output order) stand for, as
        `predict` gives it; a class the graph did not declare is InferenceFailed."""
        try:
            return decode(self.signature, self.vocabulary, raw)
        except VocabularyError as exc:
            raise InferenceFailed(f"model {self.name} version {self.version}: {exc}") from exc

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The names of a classifier's classes, in the order of its probabilities."""
        return None if self.vocabulary is None else self.vocabulary.keys

    async def infer_arrays(self, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Check whole input tensors (RowCodec.check_arrays), run them on the same path as
        `predict` (batching included), and return the raw outputs by output name."""
        note = SERVED.get()
        if note is not None:
            note.model, note.arrays = self, arrays
        checked, n_rows = self.codec.check_arrays(arrays)
        if self._runs_inline(n_rows):
            raw = self.run(checked, n_rows)
        else:
            raw = await self._execute(checked, n_rows)
        if self.drift is not None:
            self.drift.add(checked, raw, n_rows)
        outputs = dict(zip(self._output_names, raw, strict=True))
        if note is not None:
            note.arrays, note.outputs = checked, outputs
        return outputs

    async def _execute(self, arrays: Mapping[str, np.ndarray], n_rows: int) -> list[Any]:
        """Runs that await, batched or in a worker thread, counted in flight so that an unload
        waits for them."""
        batcher = self._batcher_for_one_row() if n_rows == 1 else None
        traffic = self._traffic
        traffic.in_flight += 1
        try:
            if batcher is not None:
                return await batcher.submit(arrays)
            return await self.infer(arrays, n_rows)
        finally:
            traffic.in_flight -= 1
            if not traffic.in_flight and traffic.drained is not None:
                traffic.drained.set()

    async def close(self, timeout_s: float = 30.0) -> None:
        """Wait for in-flight runs to end; the session is freed with the last reference."""
        traffic = self._traffic
        if traffic.in_flight:
            traffic.drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(traffic.drained.wait(), timeout_s)
        if traffic.batcher is not None:
            await traffic.batcher.close()


def _read_metadata(version_dir: Path, within: Path | None) -> dict[str, Any]:
    path = version_dir / METADATA_FILE
    try:
        data = json.loads(read_text(path, within=within, limit=METADATA_MAX_BYTES))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{METADATA_FILE}: cannot read: {exc}") from exc
    except RecursionError:
        raise ModelLoadError(f"{METADATA_FILE}: nested too deeply to read") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{METADATA_FILE}: must hold a JSON object")
    for key in ("features", "labels", "redact"):
        value = data.get(key)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, str | int) for v in value)
        ):
            raise ModelLoadError(f"{METADATA_FILE}: {key!r} must be a list of names")
    _check_serving_keys(data)
    return data


def _check_serving_keys(data: Mapping[str, Any]) -> None:
    """The keys that change how a version answers: each of the type it must have."""
    targets = data.get("targets")
    if targets is not None and not (
        isinstance(targets, list)
        and targets
        and all(isinstance(t, str) and t for t in targets)
        and len(set(targets)) == len(targets)
    ):
        raise ModelLoadError(
            f"{METADATA_FILE}: 'targets' must be a list of distinct names, one per output column"
        )
    if "missing_values" in data and not isinstance(data["missing_values"], bool):
        raise ModelLoadError(f"{METADATA_FILE}: 'missing_values' must be true or false")
    if "missing_string" in data and not isinstance(data["missing_string"], str):
        raise ModelLoadError(f"{METADATA_FILE}: 'missing_string' must be a string")


def _check_redact(metadata: Mapping[str, Any], signature: Signature) -> None:
    """`redact` names features: a name the model does not take would leave a field in the clear
    that its author meant to hide, so the version does not serve."""
    unknown = [str(n) for n in metadata.get("redact") or () if n not in signature.feature_names]
    if unknown:
        raise ModelLoadError(
            f"{METADATA_FILE}: 'redact' names {unknown}, which are not features of the model "
            f"({', '.join(signature.feature_names)})"
        )


def _session(model_file: Path, config: ModelConfig) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.onnxruntime.intra_op_num_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the reason reaches GET /models instead
    try:
        return ort.InferenceSession(
            str(model_file), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelLoadError(
            f"{MODEL_FILE}: onnxruntime cannot load it: {_first_line(exc)}"
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:500] if text else type(exc).__name__


def _warm_up_rows(signature: Signature, count: int) -> list[list[Any]]:
    sample = {"number": 0.0, "integer": 0, "string": "", "boolean": False}
    return [[sample[f.json_type] for f in signature.features] for _ in range(count)]


def load_model(
    name: str,
    version: int,
    version_dir: Path,
    config: ModelConfig,
    observer: ServingObserver | None = None,
    within: Path | None = None,
) -> LoadedModel:
    """Load a version, derive its signature, warm it up and time it. Blocking.

    `within` is the store: no file of the version is read through a link that leaves it."""
    model_file = version_dir / MODEL_FILE
    try:
        check_folder(version_dir, within=within)
        check_file(model_file, within=within, limit=MODEL_MAX_BYTES)
    except FileNotFoundError:
        raise ModelLoadError(f"{MODEL_FILE} is missing") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read the version: {exc}") from exc
    metadata = _read_metadata(version_dir, within)
    try:
        samples = read_samples(version_dir, within)
    except SamplesError as exc:
        raise ModelLoadError(str(exc)) from exc
    session = _session(model_file, config)
    try:
        signature = derive_signature(
            session.get_inputs(),
            session.get_outputs(),
            metadata,
            producer=session.get_modelmeta().producer_name,
        )
    except SignatureError as exc:
        raise ModelLoadError(str(exc)) from exc
    try:
        profile = read_profile(version_dir, signature.feature_names, within)
    except ProfileError as exc:
        raise ModelLoadError(str(exc)) from exc
    _check_redact(metadata, signature)
    codec = RowCodec(name, signature)
    output_names = [o.name for o in signature.outputs]
    where = _Where(name, version, version_dir, metadata)
    warm = _warm_up(
        where, session, signature, codec, output_names, samples.instances if samples else None
    )
    unobserved = LoadedModel(
        name=name,
        version=version,
        path=version_dir,
        config=config,
        metadata=metadata,
        signature=warm.signature,
        codec=codec,
        session=session,
        vocabulary=warm.vocabulary,
        inline_max_rows=warm.inline_max_rows,
        _output_names=output_names,
    )
    # samples.json is answered before the observer and the drift counter join: it is not traffic.
    checked = _check_samples(unobserved, samples) if samples is not None else 0
    drift = None
    if profile is not None:
        classes = warm.vocabulary.classes if warm.vocabulary is not None else None
        drift = DriftCounter(profile, warm.signature, classes)
    return replace(unobserved, samples_checked=checked, observer=observer, drift=drift)


def direct_run(session: ort.InferenceSession) -> SessionRun:
    """The session's run without onnxruntime's Python layer around it, which costs a served
    single-row run a good part of its time: that layer checks that every graph input is fed,
    that no value belongs to another session and that no WebGPU graph is being captured, which
    the row codec's checks (every input of the signature, as numpy arrays) and this server's
    CPU-only sessions already ensure. The layer's own run where onnxruntime has no binding."""
    native = getattr(session, "_sess", None)
    run = getattr(native, "run", None)
    return run if callable(run) else session.run


def _clocked_run(
    session: ort.InferenceSession,
    output_names: list[str],
    arrays: Mapping[str, np.ndarray],
    run_options: ort.RunOptions | None,
) -> tuple[list[Any], float]:
    """One plain run of the session and how long it took, for the warm-up's timing: through
    the same call as served runs (`direct_run`), timed as `LoadedModel._timed_run` times them."""
    started = time.perf_counter()
    outputs = direct_run(session)(output_names, arrays, run_options)
    return outputs, time.perf_counter() - started


@dataclass(frozen=True, slots=True)
class _Where:
    """The version being loaded, for the warm-up's messages and class lookup."""

    name: str
    version: int
    path: Path
    metadata: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _WarmedUp:
    """What the warm-up learnt: the signature as the outputs showed it (a classifier whose
    classes cannot be told answers raw), the classes' names, and the inline threshold."""

    signature: Signature
    vocabulary: Vocabulary | None
    inline_max_rows: int


def _warm_up(
    where: _Where,
    session: ort.InferenceSession,
    signature: Signature,
    codec: RowCodec,
    output_names: list[str],
    sample_rows: Sequence[Any] | None,
) -> _WarmedUp:
    """One real inference before serving; also measures the cost of a row to place runs.

    With samples.json, its rows warm the model up: made-up values (empty strings, zeros) can be
    refused by a graph, such as an encoder fitted to fail on unknown categories."""
    rows = signature.fixed_batch_size or 8
    if sample_rows:
        try:
            chosen = [sample_rows[i % len(sample_rows)] for i in range(rows)]
            arrays = codec.encode(chosen, ("instances",))
        except InvalidInput as exc:
            raise ModelLoadError(
                f"{SAMPLES_FILE}: instances do not fit the model: {exc.detail}"
            ) from exc
    else:
        arrays = codec.encode(_warm_up_rows(signature, rows), ("warm-up",))
    try:
        raw, _ = _clocked_run(session, output_names, arrays, None)
        timings = [_clocked_run(session, output_names, arrays, None) for _ in range(TIMING_RUNS)]
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelLoadError(f"warm-up inference failed: {_first_line(exc)}") from exc
    per_row = min(seconds for _, seconds in timings) / rows
    vocabulary = None
    if signature.output_kind in (OutputKind.CLASSIFIER, OutputKind.CLASSIFIER_ZIPMAP):
        signature, vocabulary = _name_classes(where, signature, raw)
    if signature.targets is not None:
        width = np.asarray(raw[0]).shape[-1]
        if width != len(signature.targets):
            raise ModelLoadError(
                f"{METADATA_FILE} lists {len(signature.targets)} targets but the model gives "
                f"{width} values per row"
            )
    try:
        decode(signature, vocabulary, raw)
    except Exception as exc:  # a shape we misread must fail here, not on a request
        raise ModelLoadError(
            f"warm-up outputs do not fit a {signature.output_kind}: {exc}"
        ) from exc
    inline_max_rows = max(1, int(INLINE_BUDGET_S / max(per_row, 1e-9)))
    return _WarmedUp(signature, vocabulary, inline_max_rows)


def _graph_classes(where: _Where, signature: Signature, raw: list[Any]) -> Classes | None:
    """The classes in probability-column order: from the graph, else from what the warm-up
    showed (a ZipMap's keys; an integer label's column index), else None."""
    zipmap = signature.output_kind is OutputKind.CLASSIFIER_ZIPMAP
    width = len(raw[1][0]) if zipmap and raw[1] else np.asarray(raw[1]).shape[-1]
    try:
        classes = read_classes(where.path / MODEL_FILE, signature.outputs[0].name, width)
    except Exception as exc:  # protobuf's DecodeError, or I/O: onnxruntime read it already
        log.warning(
            "%s/%s: cannot read the classes from the graph: %s", where.name, where.version, exc
        )
        classes = None
    if classes is not None:
        if len(classes) != width:
            raise ModelLoadError(
                f"the graph declares {len(classes)} classes but the model gives {width} "
                "probabilities"
            )
        return classes
    if zipmap and raw[1]:
        return tuple(raw[1][0])
    if signature.outputs[0].onnx_type == "tensor(int64)":
        return tuple(range(width))
    return None


def _name_classes(
    where: _Where, signature: Signature, raw: list[Any]
) -> tuple[Signature, Vocabulary | None]:
    """The classifier's vocabulary: the graph's classes, named by metadata.json's labels; with
    no classes to be found, a signature that answers the outputs raw instead."""
    classes = _graph_classes(where, signature, raw)
    if classes is None:
        log.warning(
            "%s/%s: the graph does not say which class each probability column is; "
            "it answers its outputs by name",
            where.name,
            where.version,
        )
        raw_signature = replace(
            signature, output_kind=OutputKind.RAW, task=where.metadata.get("task")
        )
        return raw_signature, None
    try:
        return signature, Vocabulary.build(classes, where.metadata.get("labels"))
    except VocabularyError as exc:
        raise ModelLoadError(str(exc)) from exc


def _check_samples(model: LoadedModel, samples: Samples) -> int:
    """Answer samples.json as /predict/batch would; any difference keeps the version out. The
    rows checked."""
    try:
        try:
            answer = model.answer(samples.instances, ("instances",))
        except InvalidInput as exc:
            raise SamplesError(
                f"{SAMPLES_FILE}: instances do not fit the model: {exc.detail}"
            ) from exc
        check(samples, answer)
    except (SamplesError, InferenceFailed) as exc:
        raise ModelLoadError(str(exc)) from exc
    return len(samples.instances)
