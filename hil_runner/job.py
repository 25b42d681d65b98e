"""The HIL job: flash (or verify) a board, run the evaluation patches through it, compare each output with host
LiteRT, aggregate clip accuracy, measure latency repeats, read memory figures, write one record atomically.

A board that fails (timeout, protocol error, wrong device, wrong model) is abandoned and the job retries on another
board of the same profile; when no attempt succeeds the job fails naming every board and nothing is written.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Set as AbstractSet
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from aed.fingerprints import arrays_sha256, dataset_digest, eval_set_sha256, frontend_sha256
from aed.record_schema import is_virtual_runtime, validate_hil_record
from aed.records import make_record, sha256_file, tool_versions, write_json
from hil_runner.boards.flash import NoFlash, get_strategy
from hil_runner.errors import BoardFailure, DeviceError, HilError
from hil_runner.farm import Lease
from hil_runner.fidelity import clip_accuracy, fidelity, latency_stats
from hil_runner.litert import ReferenceModel, load_reference, model_format
from hil_runner.protocol import constants as c
from hil_runner.protocol.host import Timeouts, ValidationClient
from hil_runner.protocol.tensors import dequantize, quantize
from hil_runner.transport import open_transport

log = logging.getLogger(__name__)

RECORD_KIND = "hil"


class Farm(Protocol):
    def lease(self, profile: str, exclude: AbstractSet[str] = ...) -> AbstractContextManager[Lease]: ...


@dataclass(frozen=True)
class JobConfig:
    profile: str
    latency_repeats: int = 20
    attempts: int = 2
    timeout_scale: float = 1.0
    settle_s: float = 0.4
    verify_signature: bool = True
    firmware: Path | None = (
        None  # validation firmware image for real boards (flash strategies other than none)
    )
    progress: bool = True
    exchange_timeouts: Timeouts | None = (
        None  # explicit per-exchange timeouts (tests); else ST's x timeout_scale
    )

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
        # Keep whole clips so that clip accuracy stays meaningful.
        clips = rows["clip_id"].drop_duplicates()
        counts = rows.groupby("clip_id", sort=False).size().loc[clips].cumsum()
        keep = counts[counts <= max_patches].index
        rows = rows[rows["clip_id"].isin(keep if len(keep) else clips[:1])]
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


def run_on_board(
    lease: Lease, model_path: Path, model_sha256: str, reference: HostReference, config: JobConfig
) -> dict[str, Any]:
    board = lease.board
    try:
        _flash(lease, model_path, config)
        with open_transport(lease.descriptor) as link:
            client = ValidationClient(link, config.timeouts(), where=f"board {board.name}")
            return _evaluate(client, lease, model_sha256, reference, config)
    except BoardFailure:
        raise
    except (HilError, OSError, ValueError) as error:
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
    client: ValidationClient, lease: Lease, model_sha256: str, reference: HostReference, config: JobConfig
) -> dict[str, Any]:
    board = lease.board
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
    runtime_virtual = is_virtual_runtime(model.runtime_desc)
    if board.virtual and not runtime_virtual:
        raise DeviceError(
            f"board {board.name}: listed as a virtual board but its runtime is {model.runtime_desc!r}"
        )
    virtual = runtime_virtual  # a board that runs the virtual runtime is virtual, whatever the inventory says
    verified = model.signature == model_sha256[: len(model.signature)] if model.signature else False
    if config.verify_signature and virtual and not verified:
        raise DeviceError(
            f"board {board.name}: loaded model signature {model.signature[:16]}... does not match "
            f"{model_sha256[:16]}... of the model under test"
        )
    host_in, host_out = reference.model.inputs[0], reference.model.outputs[0]
    dev_in, dev_out = model.inputs[0], model.outputs[0]
    if (dev_in.shape, dev_in.dtype) != (host_in.shape, host_in.dtype) or dev_out.shape != host_out.shape:
        raise DeviceError(
            f"board {board.name}: device model I/O {dev_in.shape}{dev_in.dtype}->{dev_out.shape} differs from "
            f"{host_in.shape}{host_in.dtype}->{host_out.shape}"
        )
    if not np.isclose(dev_in.scale, host_in.scale) or dev_in.zero_point != host_in.zero_point:
        raise DeviceError(f"board {board.name}: device input quantization differs from the model under test")

    n = len(reference.inputs)
    outputs = np.empty_like(reference.outputs)
    started = time.perf_counter()
    transfer_s = 0.0
    bar = tqdm(total=n, desc=f"hil {board.name}", unit="patch", disable=not config.progress, leave=False)
    with bar:
        for number in range(n):
            result = client.run(model, [reference.inputs[number]], first=number == 0)
            outputs[number] = dequantize(result.outputs[0], dev_out).reshape(-1)
            transfer_s += result.host_seconds
            bar.update()
    eval_s = time.perf_counter() - started
    try:
        require_finite(outputs, f"board {board.name}: outputs")
    except NonFiniteError as error:
        raise DeviceError(str(error)) from None

    durations, cycles = [], []
    for number in range(config.latency_repeats):
        result = client.run(model, [reference.inputs[0]], mode=c.RUN_PERF, first=number == 0)
        if not (math.isfinite(result.duration_ms) and result.duration_ms > 0):
            raise DeviceError(f"board {board.name}: impossible inference duration {result.duration_ms!r} ms")
        durations.append(result.duration_ms)
        cycles.append(result.cycles or 0)
    layers = []
    if device.capability & c.CAP_OBSERVER:
        per_layer = client.run(model, [reference.inputs[0]], mode=c.RUN_IO_ONLY | c.RUN_PER_LAYER)
        layers = [
            {
                "id": layer.layer_id,
                "name": layer.name,
                "type": layer.layer_type,
                "duration_ms": layer.duration_ms,
                "cycles": layer.cycles,
            }  # fmt: skip
            for layer in per_layer.layers
        ]
    return {
        "device": device,
        "model": model,
        "virtual": virtual,
        "signature_verified": verified,
        "outputs": outputs,
        "durations": durations,
        "cycles": cycles,
        "layers": layers,
        "eval_seconds": eval_s,
        "patches_per_s": n / eval_s if eval_s > 0 else None,
    }


def run_job(
    model_path: Path,
    evalset: EvalSet,
    farm: Farm,
    config: JobConfig,
    out_path: Path,
) -> dict[str, Any]:
    """Run the HIL job with retries across boards; write and return the record (nothing written on failure)."""
    model_path = Path(model_path)
    model_sha256 = sha256_file(model_path)
    reference = host_reference(model_path, evalset)
    failures: list[BoardFailure] = []
    for _ in range(config.attempts):
        try:
            with farm.lease(config.profile, exclude={f.board for f in failures}) as lease:
                board_result = run_on_board(lease, model_path, model_sha256, reference, config)
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
    record = _record(model_path, model_sha256, evalset, reference, lease, board_result, failures, config)
    # The gate trusts only records that pass this check: never write one it would refuse.
    validate_hil_record(record, out_path)
    write_json(out_path, record)
    return record


def _summary(headline: str, failures: list[BoardFailure]) -> str:
    return headline + "".join(f"\n  - {failure}" for failure in failures)


def _record(
    model_path: Path,
    model_sha256: str,
    evalset: EvalSet,
    reference: HostReference,
    lease: Lease,
    result: dict[str, Any],
    failures: list[BoardFailure],
    config: JobConfig,
) -> dict[str, Any]:
    device, model, board = result["device"], result["model"], lease.board
    source = "virtual" if result["virtual"] else "board"
    fid = fidelity(result["outputs"], reference.outputs)
    # A cosine is at most 1; float64 rounding can give 1 + 1 ulp for identical outputs, which the schema refuses.
    fid.update({name: min(1.0, max(-1.0, fid[name])) for name in ("cosine_mean", "cosine_min")})
    device_acc, n_clips = clip_accuracy(result["outputs"], evalset.clip_ids, evalset.labels)
    host_acc, _ = clip_accuracy(reference.outputs, evalset.clip_ids, evalset.labels)
    latency = latency_stats(result["durations"])
    cycles = int(np.median(result["cycles"])) if result["cycles"] else None
    host_tools = tool_versions()
    firmware = {
        "protocol_version": device.protocol_version,
        "runtime": model.runtime,
        "runtime_version": model.runtime_version,
        "tool_version": model.tool_version,
        "rtid": f"0x{model.rtid:06x}",
        "compile_datetime": model.compile_datetime,
        "runtime_desc": model.runtime_desc,
    }
    key = {
        "profile": board.profile.name,
        "device_id": f"0x{device.devid:03x}",
        "sclock_hz": device.sclock_hz,
        "runtime_version": model.runtime_version,
        "tool_version": model.tool_version,
        "kernels": reference.model.kernels,
        "host_litert": host_tools.get("ai-edge-litert", "?"),
        "source": source,
        "board": board.name,
        **evalset.identity(),
        "model_format": "onnx_qdq" if model_format(model_path) == "onnx" else "tflite",
        "runtime": model.runtime_desc,
    }
    metrics = {
        "clip_accuracy": device_acc,
        "host_clip_accuracy": host_acc,
        "top1_agreement": fid["top1_agreement"],
        "cosine_min": fid["cosine_min"],
        "l2r_max": fid["l2r_max"],
        "latency_median_ms": latency["median_ms"],
        "cycles_median": cycles,
        "weights_bytes": model.weights_bytes,
        "activations_bytes": model.activations_bytes,
        "macs": model.n_macc,
    }
    figures = {
        "source": source,
        "model_sha256": model_sha256,
        "model": {
            "path": str(model_path),
            "signature": model.signature,
            "signature_verified": result["signature_verified"],
            "n_nodes": model.n_nodes,
        },  # fmt: skip
        "board": {
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
            "virtual": result["virtual"],
        },  # fmt: skip
        "firmware": firmware,
        "key": key,
        "metrics": metrics,
        "fidelity": fid,
        "accuracy": {
            "clip_accuracy": device_acc,
            "host_clip_accuracy": host_acc,
            "n_clips": n_clips,
            "n_patches": len(reference.outputs),
            "class_names": evalset.class_names,
        },  # fmt: skip
        "latency": {**latency, "cycles_median": cycles, "clock_hz": device.sclock_hz, "source": source},
        "memory": {
            "weights_bytes": model.weights_bytes,
            "activations_bytes": model.activations_bytes,
            "macs": model.n_macc,
            "source": source,
        },  # fmt: skip
        "layers": result["layers"],
        "throughput": {"patches_per_s": result["patches_per_s"], "eval_seconds": result["eval_seconds"]},
        "failed_attempts": [{"board": f.board, "error": str(f.cause)} for f in failures],
    }
    inputs = {"model": model_path}
    if evalset.source is not None:
        inputs["patches"] = evalset.source
    return make_record(RECORD_KIND, figures, inputs)
