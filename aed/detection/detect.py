"""Run a trained model over whole recordings: sliding front end -> window scores -> events.

`detect_file` streams one recording (aed.detection.stream) through a `Scorer` (int8 TFLite, ONNX QDQ or the float
Keras model) and post-processes the scores (aed.detection.postprocess); the writers put the events of many
recordings in the DCASE layout (CSV and JSON).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from aed.audio import AudioError
from aed.detection.postprocess import EVENT_COLUMNS, Event, PostProcessParams, detect_events
from aed.detection.stream import StreamStats, stream_patches, window_seconds
from aed.features import FeatureConfig
from aed.params import bounded


class DetectError(ValueError):
    """Bad input for detect (a model, a class map, settings); the message is one line naming the file."""


@dataclass(frozen=True)
class DetectParams(PostProcessParams):
    """The `detect` section of params.yaml: how `aed detect` slides the front end and runs the model, and the
    post-processing it uses unless a calibrated operating point is given (its fields come from
    PostProcessParams)."""

    hop_s: float = bounded(
        0.5, 0.01, 10.0
    )  # seconds between window starts (a multiple of the 10 ms frame hop)
    chunk_s: float = bounded(60.0, 1.0, 3600.0)  # audio decoded at once: bounds the memory, not the results
    batch_size: int = bounded(64, 1, 4096)  # patches per model call
    threads: int = bounded(2, 1, 64)  # model runtime threads
    reference_kernels: bool = (
        False  # TFLite: LiteRT's BUILTIN_REF kernels (bit-exact with TFLite Micro, ~25x slower)
    )
    plot: bool = True  # a PNG of each class's score over time per recording

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("hop_s", "chunk_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive number of seconds, got {value!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: {self.batch_size} must be >= 1")
        if self.threads < 1:
            raise ValueError(f"threads: {self.threads} must be >= 1")

    def postprocess(self) -> PostProcessParams:
        return PostProcessParams(**self.postprocess_fields())


@dataclass
class Scorer:
    """patches (n, n_mels, frames, 1) float32 -> (n, n_classes) probabilities, in batches."""

    path: Path
    kind: str  # tflite | onnx | keras
    n_classes: int
    predict: Callable[[np.ndarray], np.ndarray]
    input_shape: tuple = ()  # one patch's shape as the model declares it (None: any size)

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        if len(patches) == 0:
            return np.zeros((0, self.n_classes), np.float32)
        probs = np.asarray(self.predict(np.asarray(patches, np.float32)), np.float32).reshape(
            len(patches), -1
        )
        if not np.isfinite(probs).all():
            # on this input only (a float model may overflow on one recording): that recording's problem
            raise ValueError(f"the model {self.path.name} gave NaN or inf scores")
        # thresholds are probabilities: a model ending in logits would make every setting meaningless
        low, high = float(probs.min()), float(probs.max())
        if low < -1e-3 or high > 1 + 1e-3:
            raise DetectError(
                f"{self.path}: the model's outputs are not probabilities (from {low:.3g} to {high:.3g}); "
                "detect needs a softmax or sigmoid output"
            )
        return probs


def check_model_input(scorer: Scorer, config: FeatureConfig) -> None:
    """The model must take the front end's patches (n_mels x patch_frames x 1): refused once, before any file."""
    expected = (config.n_mels, config.patch_frames, 1)
    declared = tuple(scorer.input_shape)
    if declared and (
        len(declared) != len(expected)
        or any(isinstance(d, int) and d > 0 and d != e for d, e in zip(declared, expected, strict=False))
    ):
        raise DetectError(
            f"{scorer.path}: the model takes patches of shape {declared}, the front end (params.yaml patch) "
            f"makes {expected}"
        )


def load_scorer(model_path: Path, reference_kernels: bool = False, threads: int = 2) -> Scorer:
    """A Scorer for an int8 .tflite, a QDQ .onnx or a float .keras model; DetectError for anything else."""
    path = Path(model_path)
    if not path.is_file() or path.stat().st_size == 0:
        raise DetectError(f"{path}: model file missing or empty")
    loaders = {
        ".tflite": _tflite_scorer,
        ".onnx": _onnx_scorer,
        ".keras": _keras_scorer,
        ".h5": _keras_scorer,
    }
    loader = loaders.get(path.suffix.lower())
    if loader is None:
        raise DetectError(f"{path}: unknown model format {path.suffix!r} (expected .tflite, .onnx or .keras)")
    return loader(path, reference_kernels, threads)


def _tflite_scorer(path: Path, reference_kernels: bool, threads: int) -> Scorer:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
    try:
        interpreter = Interpreter(
            model_path=str(path), experimental_op_resolver_type=resolver, num_threads=threads
        )
        with _quiet_native_stderr():
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        raise DetectError(f"{path}: not a valid TFLite model ({' '.join(str(error).split())})") from None
    detail_in, detail_out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    in_scale, in_zero = detail_in["quantization"]
    out_scale, out_zero = detail_out["quantization"]
    batch = [int(detail_in["shape"][0])]

    def predict(patches: np.ndarray) -> np.ndarray:
        x = patches
        if detail_in["dtype"] == np.int8:
            x = np.clip(np.round(patches / in_scale + in_zero), -128, 127).astype(np.int8)
        if batch[0] != len(x):  # one call per batch: the Python loop per patch costs as much as the model
            interpreter.resize_tensor_input(detail_in["index"], [len(x), *detail_in["shape"][1:]])
            with _quiet_native_stderr():
                interpreter.allocate_tensors()
            batch[0] = len(x)
        interpreter.set_tensor(detail_in["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(detail_out["index"]).reshape(len(x), -1)
        return (y.astype(np.float32) - out_zero) * out_scale if detail_out["dtype"] == np.int8 else y

    shape = tuple(int(d) for d in detail_in["shape"][1:])
    return Scorer(path, "tflite", int(np.prod(detail_out["shape"][1:])), predict, shape)


@contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate" from C++ on every allocation; detect's
    stderr is for the user's errors and warnings. Failures still arrive as Python exceptions."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _onnx_scorer(path: Path, reference_kernels: bool, threads: int) -> Scorer:
    from aed.models.runners import ModelFileError, onnx_session

    try:
        session = onnx_session(path, threads)
    except ModelFileError as error:
        raise DetectError(" ".join(str(error).split())) from None
    name = session.get_inputs()[0].name
    fixed_batch = isinstance(session.get_inputs()[0].shape[0], int)

    def predict(patches: np.ndarray) -> np.ndarray:
        if fixed_batch:
            return np.concatenate([session.run(None, {name: p[None]})[0] for p in patches])
        return session.run(None, {name: patches})[0]

    shape = tuple(d if isinstance(d, int) else None for d in session.get_inputs()[0].shape[1:])
    n_classes = session.get_outputs()[0].shape[-1]
    if not isinstance(n_classes, int):  # a symbolic output size: ask the model with one silent patch
        reference = FeatureConfig()
        probe_shape = [
            d or default
            for d, default in zip(shape, (reference.n_mels, reference.patch_frames, 1), strict=False)
        ]
        try:
            n_classes = int(predict(np.zeros((1, *probe_shape), np.float32)).shape[-1])
        except Exception as error:  # onnxruntime's own exception types
            raise DetectError(
                f"{path}: cannot run the ONNX model on one patch ({type(error).__name__})"
            ) from None
    return Scorer(path, "onnx", n_classes, predict, shape)


def _keras_scorer(path: Path, reference_kernels: bool, threads: int) -> Scorer:
    from aed.models.runners import ModelFileError, load_keras, predict_keras

    try:
        model = load_keras(path)
    except ModelFileError as error:
        raise DetectError(" ".join(str(error).split())) from None
    shape = tuple(model.input_shape[1:])
    return Scorer(
        path, "keras", int(model.output_shape[-1]), lambda patches: predict_keras(model, patches), shape
    )


@dataclass
class Detection:
    """One recording's windows, scores and events."""

    events: list[Event]
    starts_s: np.ndarray  # (n_windows,)
    scores: np.ndarray  # (n_windows, n_classes) raw model probabilities
    window_s: float
    filename: str = ""
    duration_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
    png: str = ""  # the score plot's file name, when one was written
    incomplete: str = ""  # why decoding stopped before the end (the events before that point are kept)


def check_class_count(
    scorer: Scorer, class_names: Sequence[str], classes_source: str = "the class map"
) -> None:
    if scorer.n_classes != len(class_names):
        raise DetectError(
            f"{scorer.path}: the model has {scorer.n_classes} outputs but {classes_source} names "
            f"{len(class_names)} classes"
        )


def detect_file(
    scorer: Scorer,
    audio_path: Path,
    class_names: Sequence[str],
    params: DetectParams,
    background: Collection[str] = (),
    config: FeatureConfig | None = None,
    progress: Callable[[float], None] | None = None,
    filename: str | None = None,
) -> Detection:
    """Events of one recording. The front end is `config` (default: the reference, without silence removal:
    a stream is never cut); `progress(seconds)` is called as windows are scored."""
    check_class_count(scorer, class_names)
    config = _streaming_config(config)
    stats = StreamStats()
    starts, scores = [], []
    incomplete = ""
    # one BLAS thread for the front end's small products: the model runtime has its own threads, and waking BLAS
    # threads for every chunk costs more than it gives on a busy machine
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            for block in stream_patches(Path(audio_path), config, params.hop_s, params.chunk_s, stats):
                for i in range(0, len(block.patches), params.batch_size):
                    scores.append(scorer(block.patches[i : i + params.batch_size]))
                starts.append(block.starts_s)
                if progress is not None:
                    progress(float(block.starts_s[-1]))
    except AudioError as error:
        if not starts:
            raise
        incomplete = str(error)  # damaged part-way: the events before the damage are kept, and it is said
    starts_s, all_scores = np.concatenate(starts), np.concatenate(scores)
    name = str(audio_path) if filename is None else filename
    window_s = window_seconds(config)
    events = detect_events(all_scores, starts_s, window_s, class_names, params, name, background)
    warnings = input_warnings(stats, config.sample_rate)
    return Detection(
        events, starts_s, all_scores, window_s, name, stats.duration_s, warnings, incomplete=incomplete
    )


def _streaming_config(config: FeatureConfig | None) -> FeatureConfig:
    from dataclasses import fields, replace

    config = config or FeatureConfig()
    plain = {f.name: getattr(config, f.name) for f in fields(FeatureConfig)}
    return replace(FeatureConfig(**plain), remove_silence=False)


def input_warnings(stats: StreamStats, model_rate: int = 16000) -> list[str]:
    """Conditions that make scores unreliable but not meaningless: said once per recording, events still kept."""
    found = []
    if stats.sample_rate < model_rate:
        found.append(
            f"recorded at {stats.sample_rate} Hz, upsampled to the model's {model_rate} Hz: nothing above "
            f"{stats.sample_rate // 2} Hz, scores may be unreliable"
        )
    if stats.peak <= 10 ** (-80 / 20):
        found.append(f"silent (peak {_dbfs(stats.peak)} dBFS): no events can be found")
    clipped = stats.clipped / max(1, stats.samples * max(1, stats.channels))
    if clipped >= 0.001:
        found.append(f"{clipped:.1%} of samples clipped at full scale: scores may be unreliable")
    dc = stats.sum_mono / max(1, stats.samples)
    if abs(dc) >= 0.05:
        # the reference front end has no high-pass: a constant leaks through the Hann window into the lowest mel
        # bands, which then look like a low-frequency sound the whole time
        found.append(f"DC offset {dc:+.3f} of full scale: it reaches the lowest mel bands and can fake "
                     "low-frequency events; high-pass the recording first")  # fmt: skip
    if stats.channels > 1 and stats.energy_channels > 0 and stats.energy_mono < 0.1 * stats.energy_channels:
        found.append(
            f"{stats.channels} channels mostly cancel when mixed to mono "
            f"({10 * math.log10(max(stats.energy_mono, 1e-30) / stats.energy_channels):.0f} dB): out of phase?"
        )
    return found


def _dbfs(peak: float) -> str:
    return "-inf" if peak <= 0 else f"{20 * math.log10(peak):.0f}"


def events_rows(detections: Sequence[Detection]) -> list[dict]:
    return [
        {"filename": e.filename, "onset": e.onset, "offset": e.offset, "event_label": e.label, "peak": e.peak}
        for detection in detections
        for e in detection.events
    ]


def write_events_csv(detections: Sequence[Detection], path: Path) -> Path:
    """Every recording's events in one CSV in the DCASE layout (filename, onset, offset, event_label, peak)."""
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*EVENT_COLUMNS, "peak"])
        writer.writeheader()
        writer.writerows(events_rows(detections))
    return path


def write_events_json(
    detections: Sequence[Detection], failed: dict[str, str], path: Path, settings: dict
) -> Path:
    """The events (DCASE layout), each recording's duration and warnings, the failed inputs and the settings."""
    from aed.records import write_json

    recordings = [
        {"filename": d.filename, "duration_s": round(d.duration_s, 3), "windows": len(d.starts_s),
         "events": len(d.events), "warnings": d.warnings, "png": d.png or None,
         "complete": not d.incomplete}
        for d in detections
    ]  # fmt: skip
    document = {
        "columns": [*EVENT_COLUMNS, "peak"],
        "events": events_rows(detections),
        "recordings": recordings,
        "failed": [{"filename": name, "error": error} for name, error in failed.items()],
        "settings": settings,
    }
    write_json(path, document)
    return Path(path)
