"""The HIL job: flash (or verify) a board, run the evaluation patches through it, compare each output with host
LiteRT, aggregate clip accuracy, measure latency repeats, read memory figures, write one record atomically.

A board that fails (timeout, protocol error, wrong device, wrong model) is abandoned and the job retries on another
board of the same profile; when no attempt succeeds the job fails naming every board and nothing is written.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
import pandas as pd
from tqdm import tqdm

from aed.fingerprints import arrays_sha256, dataset_digest, eval_set_sha256, frontend_sha256
from aed.params import bounded
from aed.record_schema import is_virtual_runtime, validate_hil_record
from aed.records import make_record, sha256_file, tool_versions, write_json
from hil_runner.boards.flash import NoFlash, get_strategy
from hil_runner.boards.inventory import Board
from hil_runner.boards.profiles import PROFILES
from hil_runner.errors import BoardFailure, DeviceError, HilError
from hil_runner.farm import Lease
from hil_runner.fidelity import clip_accuracy, fidelity, latency_stats
from hil_runner.litert import ReferenceModel, load_reference, model_format
from hil_runner.protocol import constants as c
from hil_runner.protocol.host import DeviceInfo, LayerResult, ModelInfo, Timeouts, ValidationClient
from hil_runner.protocol.tensors import dequantize, quantize
from hil_runner.transport import open_transport

log = logging.getLogger(__name__)
T = TypeVar("T")

RECORD_KIND = "hil"


class Farm(Protocol):
    def lease(self, profile: str, exclude: AbstractSet[str] = ...) -> AbstractContextManager[Lease]: ...


@dataclass(frozen=True)
class HilParams:
    """The `hil` section of params.yaml, each key with its limits: where the job runs (the farm and its boards),
    what it evaluates (split, folds, patches) and how it talks to a board (repeats, attempts, timeouts)."""

    profile: str = "b-u585i-iot02a"
    profiles: dict[str, str] | None = (
        None  # per model name, e.g. {yamnet_1024: stm32n6570-dk}; else `profile`
    )
    farm: Literal["virtual", "local", "labgrid"] = "virtual"
    virtual_boards: int = bounded(2, 1, 8)  # farm virtual: boards spawned for the job (one spare for retries)
    inventory: Path = Path("boards.yaml")  # farm local
    lock_dir: Path = Path("work/hil/locks")
    coordinator: str = "127.0.0.1:20408"  # farm labgrid
    lease_timeout_s: float = bounded(120.0, 1.0)
    split: str | None = None  # None: every split
    folds: list[int] | None = None  # None: every fold
    max_patches: int = bounded(0, 0)  # 0: every patch of the split (whole clips are kept)
    latency_repeats: int = bounded(20, 1)
    attempts: int = bounded(2, 1)
    timeout_scale: float = bounded(1.0, 0.05, 100.0)
    settle_s: float = bounded(0.4, 0.0, 5.0)
    verify_signature: bool = True
    firmware: Path | None = (
        None  # validation firmware image for real boards (flash strategies other than none)
    )
    baud: int = bounded(921600, 9600)
    virtual_link: Literal["pty", "tcp"] = "pty"  # farm virtual: tcp where the container has no /dev/pts
    workdir: Path = Path("work/hil")

    def __post_init__(self) -> None:
        # A profile no board has would only fail once a farm is up (labgrid: after lease_timeout_s): refused at
        # load instead, naming the key.
        chosen = {"profile": self.profile}
        chosen.update({f"profiles.{model}": name for model, name in (self.profiles or {}).items()})
        for key, name in chosen.items():
            if name not in PROFILES:
                raise ValueError(f"{key}: unknown board profile {name!r}; known: {sorted(PROFILES)}")

    def profile_for(self, model_name: str | None) -> str:
        """The board profile a model runs on: `profiles[model_name]`, else `profile`."""
        return (self.profiles or {}).get(model_name or "", self.profile)


@dataclass(frozen=True)
class JobConfig(HilParams):
    """One job's settings: the `hil` section (with `profile` the one chosen for the model) plus what only the
    caller sets, which params.yaml therefore cannot hold."""

    progress: bool = True
    exchange_timeouts: Timeouts | None = (
        None  # explicit per-exchange timeouts (tests); else ST's x timeout_scale
    )

    @classmethod
    def for_model(cls, params: HilParams, model_name: str | None = None, progress: bool = True) -> JobConfig:
        """The job for one model: every `hil` setting as loaded, the board profile chosen for `model_name`."""
        section = {field.name: getattr(params, field.name) for field in dataclasses.fields(HilParams)}
        return cls(**{**section, "profile": params.profile_for(model_name)}, progress=progress)

    def timeouts(self) -> Timeouts:
        if self.exchange_timeouts is not None:
            return self.exchange_timeouts
        base = Timeouts().scaled(self.timeout_scale)
        return Timeouts(**{**base.__dict__, "settle": self.settle_s})


@dataclass
class EvalSet:
    patches: np.ndarray  # (n, *input_shape_without_batch) float32
    clip_ids: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    source: Path | None = None
    # What the patches are, for the record's key: the patch store's fingerprint (None: hashed from the arrays)
    # and the front end they were made with (None: the default FeatureConfig).
    dataset_sha256: str | None = None
    frontend_sha256: str | None = None

    def identity(self) -> dict[str, Any]:
        """The key fields that describe what was evaluated."""
        from aed.features import FeatureConfig

        dataset = self.dataset_sha256 or arrays_sha256(self.patches, self.labels, names=self.class_names)
        return {
            "class_names": list(self.class_names),
            "eval_set_sha256": eval_set_sha256(self.clip_ids, len(self.patches)),
            "eval_patches": len(self.patches),
            "frontend_sha256": self.frontend_sha256 or frontend_sha256(FeatureConfig()),
            "dataset_sha256": dataset,
        }


def load_eval_set(
    store_dir: Path,
    split: str | None,
    max_patches: int = 0,
    folds: list[int] | None = None,
    frontend: Any | None = None,
) -> EvalSet:
    """Patches of one split (None: all; ESC-50 leaves the split empty) and folds (None: all).

    frontend: the aed.features.FeatureConfig the store was made with (params' `patch` section; None: default)."""
    from aed.features import FeatureConfig
    from aed.patchstore import load_patch_store

    store = load_patch_store(Path(store_dir))
    rows = store.index
    if split:
        rows = rows[rows["split"] == split]
    if folds:
        rows = rows[rows["fold"].isin(folds)]
    if rows.empty:
        splits = sorted(str(s) for s in store.index["split"].unique())
        raise ValueError(
            f"{store_dir}: no patches for split {split!r} / folds {folds} (splits present: {splits})"
        )
    if max_patches:
        rows = _whole_clips(rows, max_patches)
    patches, clip_ids = store.patches(rows), rows["clip_id"].to_numpy()
    require_finite(patches, f"{store_dir}: patches", clip_ids)  # before any board is leased
    return EvalSet(
        patches=patches,
        clip_ids=clip_ids,
        labels=rows["label_index"].to_numpy(),
        class_names=list(store.class_names),
        source=Path(store_dir),
        dataset_sha256=dataset_digest(store.file_sha256),  # hashes the loader just verified
        frontend_sha256=frontend_sha256(frontend or FeatureConfig()),
    )


def _whole_clips(rows: pd.DataFrame, max_patches: int) -> pd.DataFrame:
    """The first clips whose patches fit in max_patches (at least one clip): whole clips keep clip accuracy
    meaningful."""
    clips = rows["clip_id"].drop_duplicates()
    counts = rows.groupby("clip_id", sort=False).size().loc[clips].cumsum()
    keep = counts[counts <= max_patches].index
    return rows[rows["clip_id"].isin(keep if len(keep) else clips[:1])]


@dataclass
class HostReference:
    model: ReferenceModel
    inputs: np.ndarray  # quantized inputs, (n, *input_shape)
    outputs: np.ndarray  # float outputs, (n, n_out)


def host_reference(model_path: Path, evalset: EvalSet) -> HostReference:
    model = load_reference(model_path)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"{model_path}: expected one input and one output, got {len(model.inputs)}/{len(model.outputs)}"
        )
    spec_in, spec_out = model.inputs[0], model.outputs[0]
    if tuple(evalset.patches.shape[1:]) != spec_in.shape[1:]:
        raise ValueError(
            f"{model_path}: input shape {spec_in.shape} does not fit patches of shape {evalset.patches.shape[1:]}"
        )
    # Quantizing NaN gives arbitrary integers and every board then "agrees" with the host: refuse first.
    require_finite(evalset.patches, f"{evalset.source or 'evaluation set'}: patches", evalset.clip_ids)
    inputs = quantize(evalset.patches[:, None], spec_in)  # (n, 1, ...)
    outputs = np.stack([dequantize(model.run([x])[0], spec_out) for x in inputs])
    outputs = outputs.reshape(len(inputs), -1)
    require_finite(outputs, f"{model_path}: host reference outputs", evalset.clip_ids)
    return HostReference(model=model, inputs=inputs, outputs=outputs)


class NonFiniteError(ValueError):
    """Inputs or outputs with NaN or infinite values: nothing can be measured on them."""


def require_finite(values: np.ndarray, what: str, clip_ids: np.ndarray | None = None) -> None:
    rows = np.asarray(values).reshape(len(values), -1)
    bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
    if len(bad):
        first = (
            f"clip {clip_ids[bad[0]]}" if clip_ids is not None and len(clip_ids) > bad[0] else f"row {bad[0]}"
        )
        raise NonFiniteError(
            f"{what}: {len(bad)} of {len(rows)} contain NaN or infinite values (first: {first}); refusing to "
            "measure agreement or accuracy on them"
        )


@dataclass(frozen=True)
class LoadedModel:
    """The board and the model it runs, checked against the model under test."""

    device: DeviceInfo
    model: ModelInfo
    virtual: bool  # the board runs the virtual runtime (whatever the inventory says)
    signature_verified: bool

    @property
    def source(self) -> str:
        """Where the record's figures come from: "virtual" or "board"."""
        return "virtual" if self.virtual else "board"


@dataclass(frozen=True)
class Inference:
    """The evaluation patches run through the board."""

    outputs: np.ndarray  # (n, n_out) dequantized device outputs, in the order of the host reference
    eval_seconds: float

    @property
    def patches_per_s(self) -> float | None:
        return len(self.outputs) / self.eval_seconds if self.eval_seconds > 0 else None


@dataclass(frozen=True)
class LatencyRuns:
    """The perf-mode repeats on the first patch."""

    durations_ms: tuple[float, ...]
    cycles: tuple[int, ...]  # 0 where the device reports no cycle count


@dataclass(frozen=True)
class BoardRun:
    """Everything measured on the one board that completed the job."""

    loaded: LoadedModel
    inference: Inference
    latency: LatencyRuns
    layers: tuple[LayerResult, ...]  # empty when the device has no per-layer observer


@dataclass(frozen=True)
class Scores:
    """The board's figures against the host reference and the clip labels."""

    fidelity: dict[str, float]
    clip_accuracy: float
    host_clip_accuracy: float
    n_clips: int
    latency: dict[str, float]
    cycles_median: int | None


def run_on_board(
    lease: Lease, model_path: Path, model_sha256: str, reference: HostReference, config: JobConfig
) -> BoardRun:
    return on_board(lease, model_path, config,
                    lambda client: _evaluate(client, lease.board, model_sha256, reference, config))  # fmt: skip


def on_board(
    lease: Lease,
    model_path: Path,
    config: JobConfig,
    work: Callable[[ValidationClient], T],
    failures: tuple[type[Exception], ...] = (HilError, OSError, ValueError),
) -> T:
    """Flashes the leased board, opens its link and runs `work` with a validation client on it. An error of
    `failures` becomes a BoardFailure naming the board (the farm then tries another board)."""
    board = lease.board
    try:
        _flash(lease, model_path, config)
        with open_transport(lease.descriptor) as link:
            return work(ValidationClient(link, config.timeouts(), where=f"board {board.name}"))
    except BoardFailure:
        raise
    except failures as error:
        raise BoardFailure(board.name, error) from error


def _flash(lease: Lease, model_path: Path, config: JobConfig) -> None:
    board = lease.board
    timeout = 180.0 * config.timeout_scale
    if board.flash == "none":
        NoFlash().flash(model_path, board.flash_target(), timeout=timeout)
        return
    firmware = config.firmware or board.firmware
    if firmware is None:
        log.info(
            "board %s: no firmware image given; verifying the loaded model instead of flashing", board.name
        )
        return
    if lease.flasher is not None:  # the farm's driver for this board (labgrid: the probe the place exports)
        lease.flasher.flash(firmware, timeout)
        return
    get_strategy(board.flash).flash(firmware, board.flash_target(), timeout=timeout)


def _evaluate(
    client: ValidationClient, board: Board, model_sha256: str, reference: HostReference, config: JobConfig
) -> BoardRun:
    """The job's phases on one board: check what it runs, run the patches, time the repeats, time the layers."""
    loaded = _check_loaded_model(client, board, model_sha256, reference, config.verify_signature)
    inference = _infer(client, board, loaded.model, reference, config.progress)
    latency = _measure_latency(client, board, loaded.model, reference, config.latency_repeats)
    layers = _profile_layers(client, loaded, reference)
    return BoardRun(loaded=loaded, inference=inference, latency=latency, layers=layers)


def _check_loaded_model(
    client: ValidationClient,
    board: Board,
    model_sha256: str,
    reference: HostReference,
    verify_signature: bool,
) -> LoadedModel:
    device = client.connect()
    if device.devid != board.profile.devid:
        raise DeviceError(
            f"board {board.name}: device id 0x{device.devid:03x}, expected 0x{board.profile.devid:03x} "
            f"({board.profile.device}) for profile {board.profile.name}"
        )
    models = client.models()
    if not models:
        raise DeviceError(f"board {board.name}: no model on the device")
    model = models[0]
    virtual = is_virtual_runtime(model.runtime_desc)
    if board.virtual and not virtual:
        raise DeviceError(
            f"board {board.name}: listed as a virtual board but its runtime is {model.runtime_desc!r}"
        )
    verified = model.signature == model_sha256[: len(model.signature)] if model.signature else False
    if verify_signature and virtual and not verified:
        raise DeviceError(
            f"board {board.name}: loaded model signature {model.signature[:16]}... does not match "
            f"{model_sha256[:16]}... of the model under test"
        )
    _check_model_io(board, model, reference.model)
    return LoadedModel(device=device, model=model, virtual=virtual, signature_verified=verified)


def _check_model_io(board: Board, model: ModelInfo, host: ReferenceModel) -> None:
    """The device model takes and gives what the host model does, with the same input quantization."""
    host_in, host_out = host.inputs[0], host.outputs[0]
    dev_in, dev_out = model.inputs[0], model.outputs[0]
    if (dev_in.shape, dev_in.dtype) != (host_in.shape, host_in.dtype) or dev_out.shape != host_out.shape:
        raise DeviceError(
            f"board {board.name}: device model I/O {dev_in.shape}{dev_in.dtype}->{dev_out.shape} differs from "
            f"{host_in.shape}{host_in.dtype}->{host_out.shape}"
        )
    if not np.isclose(dev_in.scale, host_in.scale) or dev_in.zero_point != host_in.zero_point:
        raise DeviceError(f"board {board.name}: device input quantization differs from the model under test")


def _infer(
    client: ValidationClient, board: Board, model: ModelInfo, reference: HostReference, progress: bool
) -> Inference:
    n = len(reference.inputs)
    outputs = np.empty_like(reference.outputs)
    started = time.perf_counter()
    bar = tqdm(total=n, desc=f"hil {board.name}", unit="patch", disable=not progress, leave=False)
    with bar:
        for number in range(n):
            result = client.run(model, [reference.inputs[number]], first=number == 0)
            outputs[number] = dequantize(result.outputs[0], model.outputs[0]).reshape(-1)
            bar.update()
    eval_seconds = time.perf_counter() - started
    try:
        require_finite(outputs, f"board {board.name}: outputs")
    except NonFiniteError as error:
        raise DeviceError(str(error)) from None
    return Inference(outputs=outputs, eval_seconds=eval_seconds)


def _measure_latency(
    client: ValidationClient, board: Board, model: ModelInfo, reference: HostReference, repeats: int
) -> LatencyRuns:
    durations, cycles = [], []
    for number in range(repeats):
        result = client.run(model, [reference.inputs[0]], mode=c.RUN_PERF, first=number == 0)
        if not (math.isfinite(result.duration_ms) and result.duration_ms > 0):
            raise DeviceError(f"board {board.name}: impossible inference duration {result.duration_ms!r} ms")
        durations.append(result.duration_ms)
        cycles.append(result.cycles or 0)
    return LatencyRuns(durations_ms=tuple(durations), cycles=tuple(cycles))


def _profile_layers(
    client: ValidationClient, loaded: LoadedModel, reference: HostReference
) -> tuple[LayerResult, ...]:
    if not loaded.device.capability & c.CAP_OBSERVER:
        return ()
    per_layer = client.run(loaded.model, [reference.inputs[0]], mode=c.RUN_IO_ONLY | c.RUN_PER_LAYER)
    return tuple(per_layer.layers)


def run_job(
    model_path: Path,
    evalset: EvalSet,
    farm: Farm,
    config: JobConfig,
    record_path: Path,
) -> dict[str, Any]:
    """Run the HIL job with retries across boards; write and return the record (nothing written on failure)."""
    model_path = Path(model_path)
    model_sha256 = sha256_file(model_path)
    reference = host_reference(model_path, evalset)
    failures: list[BoardFailure] = []
    for _ in range(config.attempts):
        try:
            with farm.lease(config.profile, exclude={f.board for f in failures}) as lease:
                board_run = run_on_board(lease, model_path, model_sha256, reference, config)
                break
        except BoardFailure as failure:
            log.warning("%s; retrying on another board", failure)
            failures.append(failure)
        except HilError as error:
            raise HilError(
                _summary(f"HIL job could not get a {config.profile} board: {error}", failures)
            ) from error
    else:
        raise HilError(_summary(f"HIL job failed on {len(failures)} board(s)", failures))
    record = _record(model_path, model_sha256, evalset, reference, lease, board_run, failures)
    # The gate trusts only records that pass this check: never write one it would refuse.
    validate_hil_record(record, record_path)
    write_json(record_path, record)
    return record


def _summary(headline: str, failures: list[BoardFailure]) -> str:
    return headline + "".join(f"\n  - {failure}" for failure in failures)


def _score(run: BoardRun, reference: HostReference, evalset: EvalSet) -> Scores:
    outputs = run.inference.outputs
    fid = fidelity(outputs, reference.outputs)
    # A cosine is at most 1; float64 rounding can give 1 + 1 ulp for identical outputs, which the schema refuses.
    fid.update({name: min(1.0, max(-1.0, fid[name])) for name in ("cosine_mean", "cosine_min")})
    device_acc, n_clips = clip_accuracy(outputs, evalset.clip_ids, evalset.labels)
    host_acc, _ = clip_accuracy(reference.outputs, evalset.clip_ids, evalset.labels)
    cycles = run.latency.cycles
    return Scores(
        fidelity=fid,
        clip_accuracy=device_acc,
        host_clip_accuracy=host_acc,
        n_clips=n_clips,
        latency=latency_stats(list(run.latency.durations_ms)),
        cycles_median=int(np.median(cycles)) if cycles else None,
    )


def _record(
    model_path: Path,
    model_sha256: str,
    evalset: EvalSet,
    reference: HostReference,
    lease: Lease,
    run: BoardRun,
    failures: list[BoardFailure],
) -> dict[str, Any]:
    """The HIL record: what ran where (identity), then what was measured."""
    scores = _score(run, reference, evalset)
    identity = {
        "source": run.loaded.source,
        "model_sha256": model_sha256,
        "model": _model_section(model_path, run.loaded),
        "board": _board_section(lease, run.loaded),
        "firmware": _firmware_section(run.loaded),
        "key": _key_section(model_path, evalset, reference, lease.board, run.loaded),
    }
    inputs = {"model": model_path}
    if evalset.source is not None:
        inputs["patches"] = evalset.source
    figures = {**identity, **_measurement_sections(scores, run, len(reference.outputs), evalset.class_names)}
    figures["failed_attempts"] = [{"board": f.board, "error": str(f.cause)} for f in failures]
    return make_record(RECORD_KIND, figures, inputs)


def _model_section(model_path: Path, loaded: LoadedModel) -> dict[str, Any]:
    return {
        "path": str(model_path),
        "signature": loaded.model.signature,
        "signature_verified": loaded.signature_verified,
        "n_nodes": loaded.model.n_nodes,
    }


def _board_section(lease: Lease, loaded: LoadedModel) -> dict[str, Any]:
    board, device = lease.board, loaded.device
    return {
        "name": board.name,
        "profile": board.profile.name,
        "via": lease.via,
        "descriptor": lease.descriptor,
        "device_id": f"0x{device.devid:03x}",
        "device": board.profile.device,
        "sclock_hz": device.sclock_hz,
        "hclock_hz": device.hclock_hz,
        "extra": list(device.extra),
        "cache": f"0x{device.cache:08x}",
        "virtual": loaded.virtual,
    }


def _firmware_section(loaded: LoadedModel) -> dict[str, Any]:
    model = loaded.model
    return {
        "protocol_version": loaded.device.protocol_version,
        "runtime": model.runtime,
        "runtime_version": model.runtime_version,
        "tool_version": model.tool_version,
        "rtid": f"0x{model.rtid:06x}",
        "compile_datetime": model.compile_datetime,
        "runtime_desc": model.runtime_desc,
    }


def _key_section(
    model_path: Path, evalset: EvalSet, reference: HostReference, board: Board, loaded: LoadedModel
) -> dict[str, Any]:
    """The fields that must match for two records to be compared (the gate's key)."""
    device, model = loaded.device, loaded.model
    return {
        "profile": board.profile.name,
        "device_id": f"0x{device.devid:03x}",
        "sclock_hz": device.sclock_hz,
        "runtime_version": model.runtime_version,
        "tool_version": model.tool_version,
        "kernels": reference.model.kernels,
        "host_litert": tool_versions().get("ai-edge-litert", "?"),
        "source": loaded.source,
        "board": board.name,
        **evalset.identity(),
        "model_format": "onnx_qdq" if model_format(model_path) == "onnx" else "tflite",
        "runtime": model.runtime_desc,
    }


def _measurement_sections(
    scores: Scores, run: BoardRun, n_patches: int, class_names: list[str]
) -> dict[str, Any]:
    """metrics (the gate's figures), then each measurement in full."""
    model, source, latency = run.loaded.model, run.loaded.source, scores.latency
    memory = {"weights_bytes": model.weights_bytes, "activations_bytes": model.activations_bytes,
              "macs": model.n_macc}  # fmt: skip
    return {
        "metrics": {
            "clip_accuracy": scores.clip_accuracy,
            "host_clip_accuracy": scores.host_clip_accuracy,
            **{name: scores.fidelity[name] for name in ("top1_agreement", "cosine_min", "l2r_max")},
            "latency_median_ms": latency["median_ms"],
            "cycles_median": scores.cycles_median,
            **memory,
        },
        "fidelity": scores.fidelity,
        "accuracy": {
            "clip_accuracy": scores.clip_accuracy,
            "host_clip_accuracy": scores.host_clip_accuracy,
            "n_clips": scores.n_clips,
            "n_patches": n_patches,
            "class_names": class_names,
        },  # fmt: skip
        "latency": {
            **latency,
            "cycles_median": scores.cycles_median,
            "clock_hz": run.loaded.device.sclock_hz,
            "source": source,
        },  # fmt: skip
        "memory": {**memory, "source": source},
        "layers": [_layer_entry(layer) for layer in run.layers],
        "throughput": {
            "patches_per_s": run.inference.patches_per_s,
            "eval_seconds": run.inference.eval_seconds,
        },
    }


def _layer_entry(layer: LayerResult) -> dict[str, Any]:
    return {
        "id": layer.layer_id,
        "name": layer.name,
        "type": layer.layer_type,
        "duration_ms": layer.duration_ms,
        "cycles": layer.cycles,
    }
