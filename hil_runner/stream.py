"""A recording through the board: `aed hil run --stream RECORDING`.

The reference front end slides over the whole recording (aed.detection.stream, no silence removal, hop `hop_s`)
and every patch goes to the board in order, over the same protocol and farm as the patch-store job
(hil_runner.job). The board's outputs go through the same post-processing as host detect (aed.detection), and host
detect runs on the same model and recording, so the record holds both event lists side by side: the gate
(hil_runner.gate, `stream ...` checks) fails when they differ beyond its thresholds.

Memory stays bounded on long recordings: patches are made, quantized and sent one block at a time; only the
(n_windows, n_classes) scores are kept.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from aed.audio import probe
from aed.detection.detect import DetectParams, detect_file, load_scorer
from aed.detection.postprocess import EVENT_COLUMNS, Event, detect_events
from aed.detection.stream import stream_patches
from aed.features import FeatureConfig
from aed.fingerprints import frontend_sha256
from aed.quantize import quantize_input
from aed.records import make_record, sha256_file, write_json
from hil_runner.errors import BoardFailure, DeviceError, HilError
from hil_runner.farm import Lease
from hil_runner.job import (
    Farm,
    HostReference,
    JobConfig,
    LoadedModel,
    _check_loaded_model,
    on_board,
    require_finite,
)
from hil_runner.litert import ReferenceModel, load_reference, model_format
from hil_runner.protocol.host import ValidationClient
from hil_runner.protocol.tensors import TensorSpec, dequantize, quantize

log = logging.getLogger(__name__)

STREAM_RECORD_KIND = "hil-stream"


@dataclass(frozen=True)
class StreamSpec:
    """What one stream job runs: the recording, the model's classes, the front end and the operating point."""

    recording: Path
    class_names: list[str]
    frontend: FeatureConfig
    detect: DetectParams  # hop_s and the post-processing (the calibrated operating point when there is one)
    background: tuple[str, ...] = ()  # classes that never make events (aed.datasets.background)
    truth: Path | None = None  # ground-truth events (DCASE CSV) for the event metrics; None: none computed

    def __post_init__(self) -> None:
        unknown = sorted(set(self.background) - set(self.class_names))
        if unknown:
            raise ValueError(f"background: {unknown} are not classes of the model ({self.class_names})")


@dataclass(frozen=True)
class BoardStream:
    """The recording's windows as the board scored them."""

    loaded: LoadedModel
    window_starts_s: np.ndarray
    outputs: np.ndarray  # (n_windows, n_classes), dequantized board outputs


@dataclass(frozen=True)
class HostStream:
    """The model under test and host detect's result on the recording, made before any board is leased."""

    model_path: Path
    model_sha256: str
    reference: ReferenceModel
    detection: Any  # aed.detection.detect.Detection
    truth: list[Event] | None  # the recording's ground-truth events (StreamSpec.truth), None without a table


def host_stream(model_path: Path, spec: StreamSpec) -> HostStream:
    """Host detect on the recording: every input problem (recording, model, class map) shows here, one line."""
    model_path = Path(model_path)
    reference = load_reference(model_path)
    _check_model_classes(model_path, reference, spec.class_names)
    # Host detect with LiteRT's reference kernels (a TFLite model), bit-exact with TFLite Micro as the HIL job's
    # host reference is: a difference in events is then the board's, not an optimized kernel's rounding.
    scorer = load_scorer(model_path, reference_kernels=True, threads=spec.detect.threads)
    detection = detect_file(scorer, spec.recording, spec.class_names, spec.detect, spec.background,
                            config=spec.frontend, filename=spec.recording.name)  # fmt: skip
    for warning in getattr(detection, "warnings", []):
        log.warning("%s", warning)  # the same notes `aed detect` prints: silence, clipping, DC offset
    truth = read_truth(spec.truth, spec.recording.name) if spec.truth is not None else None
    return HostStream(model_path, sha256_file(model_path), reference, detection, truth)


def run_stream_job(
    host_run: HostStream, spec: StreamSpec, farm: Farm, config: JobConfig, record_path: Path
) -> dict[str, Any]:
    """The stream on a board (retried on another board of the profile when one fails), post-processed as host
    detect; write and return the record (nothing written on failure)."""
    model_path, model_sha256, reference = host_run.model_path, host_run.model_sha256, host_run.reference
    host = host_run.detection
    failures: list[BoardFailure] = []
    for _ in range(config.attempts):
        try:
            with farm.lease(config.profile, exclude={f.board for f in failures}) as lease:
                board = stream_on_board(lease, model_path, model_sha256, reference, spec, config)
                break
        except BoardFailure as failure:
            log.warning("%s; retrying on another board", failure)
            failures.append(failure)
        except HilError as error:
            raise HilError(f"stream job could not get a {config.profile} board: {error}") from error
    else:
        lines = "".join(f"\n  - {failure}" for failure in failures)
        raise HilError(f"stream job failed on {len(failures)} board(s){lines}")
    if len(board.outputs) != len(host.scores):
        raise HilError(
            f"{spec.recording}: the board scored {len(board.outputs)} windows, host detect {len(host.scores)}"
        )
    board_events = detect_events(board.outputs, board.window_starts_s, host.window_s, spec.class_names,
                                 spec.detect, filename=spec.recording.name, background=spec.background)  # fmt: skip
    record = _record(host_run, spec, lease, board, board_events, failures)
    write_json(record_path, record)
    return record


def board_inputs(patches: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """The tensors sent for a block of patches, (n, *input shape). An int8 input is quantized as host detect and
    the firmware do (aed.quantize.quantize_input: round(x / scale + zero point)), so the board sees exactly the
    inputs host detect's interpreter sees; the protocol's own quantize rounds round(x / scale) + zero point,
    which differs by one step at exact halves when the zero point is odd."""
    values = np.asarray(patches, np.float32).reshape(-1, *spec.shape)
    if spec.dtype == np.int8 and spec.scale:
        return quantize_input(values, spec.scale, spec.zero_point)
    return quantize(values, spec)


def streaming_frontend(config: FeatureConfig) -> FeatureConfig:
    """The front end as detect slides it: the same settings, never cutting silence out of a stream."""
    plain = {field.name: getattr(config, field.name) for field in dataclasses.fields(FeatureConfig)}
    return dataclasses.replace(FeatureConfig(**plain), remove_silence=False)


def _check_model_classes(model_path: Path, reference: ReferenceModel, class_names: Sequence[str]) -> None:
    outputs = int(np.prod(reference.outputs[0].shape[1:]))
    if outputs != len(class_names):
        raise ValueError(
            f"{model_path}: the model has {outputs} outputs but the class map has {len(class_names)} classes "
            f"({list(class_names)})"
        )


def stream_on_board(
    lease: Lease,
    model_path: Path,
    model_sha256: str,
    reference: ReferenceModel,
    spec: StreamSpec,
    config: JobConfig,
) -> BoardStream:
    board = lease.board
    stand_in = HostReference(model=reference, inputs=np.empty(0), outputs=np.empty(0))

    def feed(client: ValidationClient) -> BoardStream:
        loaded = _check_loaded_model(client, board, model_sha256, stand_in, config.verify_signature)
        return _feed(client, loaded, reference, spec, config.progress, board.name)

    # A ValueError here is the recording's (shorter than one patch), not the board's: no other board is tried.
    return on_board(lease, model_path, config, feed, failures=(HilError, OSError))


def _feed(
    client: ValidationClient,
    loaded: LoadedModel,
    reference: ReferenceModel,
    spec: StreamSpec,
    progress: bool,
    board_name: str,
) -> BoardStream:
    """Every window of the recording to the board, in order, one block of patches at a time."""
    spec_in, dev_out = reference.inputs[0], loaded.model.outputs[0]
    expected = math.floor(probe(spec.recording).duration_s / spec.detect.hop_s) + 1
    starts: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    bar = tqdm(total=expected, desc=f"stream {board_name}", unit="window", disable=not progress, leave=False)
    with bar:
        for block in stream_patches(spec.recording, streaming_frontend(spec.frontend), spec.detect.hop_s,
                                    spec.detect.chunk_s):  # fmt: skip
            inputs = board_inputs(block.patches, spec_in)
            for x in inputs:
                result = client.run(loaded.model, [x], first=not scores)
                scores.append(dequantize(result.outputs[0], dev_out).reshape(-1))
                bar.update()
            starts.append(np.asarray(block.starts_s, np.float64))
    if not scores:
        raise ValueError(f"{spec.recording}: no window to stream (shorter than one patch?)")
    outputs = np.stack(scores)
    try:
        require_finite(outputs, f"board {board_name}: outputs")
    except ValueError as error:
        raise DeviceError(str(error)) from None
    return BoardStream(loaded=loaded, window_starts_s=np.concatenate(starts), outputs=outputs)


# -- comparing events ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EventComparison:
    pairs: list[tuple[Event, Event]]  # (one side's event, the other's) of one label that overlap
    only_first: list[Event]
    only_second: list[Event]

    @property
    def max_onset_diff_s(self) -> float:
        return max((abs(a.onset - b.onset) for a, b in self.pairs), default=0.0)

    @property
    def max_offset_diff_s(self) -> float:
        return max((abs(a.offset - b.offset) for a, b in self.pairs), default=0.0)

    @property
    def unmatched(self) -> int:
        return len(self.only_first) + len(self.only_second)


def match_events(first: Sequence[Event], second: Sequence[Event]) -> EventComparison:
    """Pair the events of two lists one to one: same label, overlapping in time, the largest overlap first.

    An event of one list that overlaps none left in the other (or whose label differs) stays unmatched."""
    candidates = sorted(
        ((_overlap(a, b), i, j) for i, a in enumerate(first) for j, b in enumerate(second)
         if a.label == b.label and _overlap(a, b) > 0),
        key=lambda item: (-item[0], item[1], item[2]),
    )  # fmt: skip
    used_first: set[int] = set()
    used_second: set[int] = set()
    pairs = []
    for _, i, j in candidates:
        if i not in used_first and j not in used_second:
            used_first.add(i)
            used_second.add(j)
            pairs.append((first[i], second[j]))
    pairs.sort(key=lambda pair: (pair[0].onset, pair[0].label))
    only_first = [e for i, e in enumerate(first) if i not in used_first]
    only_second = [e for j, e in enumerate(second) if j not in used_second]
    return EventComparison(pairs, only_first, only_second)


def _overlap(a: Event, b: Event) -> float:
    return min(a.offset, b.offset) - max(a.onset, b.onset)


def agreement_metrics(board: Sequence[Event], host: Sequence[Event], board_scores: np.ndarray,
                      host_scores: np.ndarray) -> dict[str, Any]:  # fmt: skip
    """The gate's stream figures: how the board's events differ from host detect's."""
    comparison = match_events(board, host)
    return {
        "board_events": len(board),
        "host_events": len(host),
        "matched_events": len(comparison.pairs),
        "unmatched_events": comparison.unmatched,
        "max_onset_diff_s": comparison.max_onset_diff_s,
        "max_offset_diff_s": comparison.max_offset_diff_s,
        "max_peak_diff": max((abs(a.peak - b.peak) for a, b in comparison.pairs), default=0.0),
        "max_score_diff": float(np.max(np.abs(board_scores - host_scores))) if len(board_scores) else 0.0,
        "windows": len(board_scores),
        "identical_events": [e.to_dict() for e in board] == [e.to_dict() for e in host],
    }


# -- event metrics against a ground truth ----------------------------------------------------------------------
def read_truth(path: Path, filename: str) -> list[Event]:
    """The ground-truth events of one recording from a DCASE table (filename, onset, offset, event_label)."""
    import pandas as pd

    try:
        table = pd.read_csv(path, sep=None, engine="python")
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read the ground-truth table ({error})") from None
    missing = [column for column in EVENT_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(
            f"{path}: ground-truth table lacks column(s) {missing}; expected {list(EVENT_COLUMNS)}"
        )
    rows = table[table["filename"].astype(str).map(lambda name: Path(name).name) == filename]
    events = []
    for number, row in zip(rows.index, rows.itertuples(index=False), strict=True):
        try:
            onset, offset = float(row.onset), float(row.offset)
        except (TypeError, ValueError):
            onset = offset = math.nan
        if not (math.isfinite(onset) and math.isfinite(offset) and 0 <= onset < offset):
            raise ValueError(
                f"{path}: row {number + 2}: onset {row.onset} / offset {row.offset} is not an event"
            )
        events.append(Event(filename, onset, offset, str(row.event_label), 1.0))
    return events


def truth_metrics(
    events: Sequence[Event], truth: Sequence[Event], duration_s: float, classes: Collection[str]
) -> dict[str, Any]:
    """Event metrics of one recording: an event counts as found when an event of its label overlaps it.

    false_alarms_per_hour: detected events that overlap no true event of their label, per hour of audio;
    miss_rate: true events that no detected event overlaps. (The streaming evaluation computes the DCASE metrics
    over every soundscape; these are the same stream's figures on the board.)"""
    truth = [e for e in truth if e.label in classes]
    comparison = match_events(events, truth)
    hours = duration_s / 3600.0
    found = len(comparison.pairs)
    precision = found / len(events) if events else 1.0
    recall = found / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "events": len(events),
        "true_events": len(truth),
        "found_events": found,
        "false_alarms": len(comparison.only_first),
        "false_alarms_per_hour": len(comparison.only_first) / hours if hours else 0.0,
        "miss_rate": len(comparison.only_second) / len(truth) if truth else 0.0,
        "event_f1_overlap": f1,
        "onset_error_s": _mean([abs(a.onset - b.onset) for a, b in comparison.pairs]),
        "offset_error_s": _mean([abs(a.offset - b.offset) for a, b in comparison.pairs]),
    }


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


# -- the record ------------------------------------------------------------------------------------------------
def _record(
    host_run: HostStream,
    spec: StreamSpec,
    lease: Lease,
    board: BoardStream,
    board_events: list[Event],
    failures: list[BoardFailure],
) -> dict[str, Any]:
    model_path, model_sha256, host = host_run.model_path, host_run.model_sha256, host_run.detection
    duration_s = probe(spec.recording).duration_s
    source = board.loaded.source
    key = {
        "profile": lease.board.profile.name,
        "source": source,
        "class_names": list(spec.class_names),
        "background": list(spec.background),
        "frontend_sha256": frontend_sha256(spec.frontend),
        "recording_sha256": sha256_file(spec.recording),
        "model_format": "onnx_qdq" if model_format(model_path) == "onnx" else "tflite",
        "runtime": board.loaded.model.runtime_desc,
    }
    figures: dict[str, Any] = {
        "source": source,
        "model_sha256": model_sha256,
        "model": {"path": str(model_path), "signature_verified": board.loaded.signature_verified},
        "board": {
            "name": lease.board.name,
            "profile": lease.board.profile.name,
            "via": lease.via,
            "virtual": board.loaded.virtual,
        },  # fmt: skip
        "recording": {
            "path": str(spec.recording),
            "duration_s": duration_s,
            "windows": len(board.outputs),
            "warnings": list(getattr(host, "warnings", [])),
        },  # silence, clipping, DC offset (detect's)
        "key": key,
        "detect": {
            **spec.detect.postprocess_fields(),
            "hop_s": spec.detect.hop_s,
            "window_s": host.window_s,
            "host_kernels": "BUILTIN_REF" if scorer_kind(model_path) == "tflite" else "onnxruntime",
        },
        "metrics": agreement_metrics(board_events, host.events, board.outputs, np.asarray(host.scores)),
        "events": {"board": [e.to_dict() for e in board_events], "host": [e.to_dict() for e in host.events]},
        "truth": None,
        "failed_attempts": [{"board": f.board, "error": str(f.cause)} for f in failures],
    }
    if host_run.truth is not None:
        truth = host_run.truth
        targets = [name for name in spec.class_names if name not in spec.background]
        figures["truth"] = {
            "path": str(spec.truth),
            "board": truth_metrics(board_events, truth, duration_s, targets),
            "host": truth_metrics(host.events, truth, duration_s, targets),
        }
    inputs = {"model": model_path, "recording": spec.recording}
    return make_record(STREAM_RECORD_KIND, figures, inputs)


def scorer_kind(model_path: Path) -> str:
    return "onnx" if model_format(model_path) == "onnx" else "tflite"


def stream_summary(m: dict[str, Any]) -> str:
    """The console line of a stream job, from its metrics with `source` and `board` (components.hil.run_stream)."""
    same = "identical events" if m["identical_events"] else f"{m['unmatched_events']} unmatched event(s)"
    return (f"source={m['source']}, board={m['board']}, windows={m['windows']}, "
            f"board_events={m['board_events']}, host_events={m['host_events']}, {same}, "
            f"max_onset_diff_s={m['max_onset_diff_s']:g}, max_score_diff={m['max_score_diff']:.3g}")  # fmt: skip
