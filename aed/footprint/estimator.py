"""The built-in footprint / latency estimator: `estimate(model_path, target) -> dict` (JSON-ready).

Every figure it returns is computed, not measured, and carries `source: estimator`.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aed.footprint.budgets import DEVICES, KIB, RUNTIME_KIB, verdict
from aed.footprint.graph import Graph, ModelFormatError, NotQuantizedError, Op
from aed.footprint.latency import (
    LATEST,
    LatencyModel,
    calibration_record,
    check_calibration,
    latency_model,
    n6_blob_bytes,
)
from aed.footprint.ops import op_macs
from aed.footprint.planner import Plan, plan_greedy, plan_improved
from aed.footprint.replay import UnsafePlanError, replay
from aed.footprint.weights import count_weights, layer_weight_bytes
from aed.records import sha256_file

SCHEMA_VERSION = 1
ESTIMATOR_VERSION = "1.0"
TARGETS = tuple(DEVICES)
# Calibration of ST's MCU allocator against the TFLM arena (109.57 / 144 KiB, YAMNet-256 on U5).
ST_MCU_ACTIVATION_RATIO = 109.57 / 144.0


def load_graph(model_path: Path) -> Graph:
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        from aed.footprint.tflite_reader import read_tflite

        try:
            return read_tflite(path)
        except (struct.error, IndexError, UnicodeDecodeError, OverflowError) as error:
            # offsets that point past the end of a truncated or corrupt flatbuffer
            raise ModelFormatError(f"{path}: not a readable .tflite model ({error})") from None
    if suffix == ".onnx":
        from aed.footprint.onnx_reader import read_onnx

        return read_onnx(path)
    raise ModelFormatError(f"{path}: unsupported model type '{suffix}' (expected .tflite or QDQ .onnx)")


@dataclass(frozen=True)
class ActivationPlans:
    """The two arena plans; `improved` is the greedy plan again when its replay failed (see replay_status)."""

    greedy: Plan
    improved: Plan
    replay_status: str


@dataclass(frozen=True)
class LayerTable:
    """Per-layer rows (JSON-ready, in graph order) and their summed latency in seconds."""

    rows: list[dict[str, Any]]
    total_seconds: float


def estimate(
    model_path: Path,
    target: str,
    allow_float: bool = False,
    tool_version: str = "2.0.0",
    calibration: str = LATEST,
) -> dict[str, Any]:
    """Weights, activations (TFLM greedy and improved planners), MACs, latency and a budget verdict.

    `calibration` is the ST Edge AI Core version whose published figures the latency and N6 blob models are
    calibrated on (aed.footprint.latency). A float model raises NotQuantizedError unless allow_float is set;
    then the figures are an explicit float estimate (`quantization: float32`).
    """
    started = time.perf_counter()
    _check_target(target, tool_version)
    check_calibration(calibration)
    graph = _load_checked(model_path, allow_float)
    weights = {**count_weights(graph), "source": "estimator"}
    plans = plan_activations(graph)
    model = latency_model(target, calibration)
    table = layer_table(graph, model)
    activations = _activations(plans, table.rows)
    result: dict[str, Any] = {
        **_header(graph, target),
        "weights_bytes": weights["weights_bytes"],
        "weights_kib": round(weights["weights_bytes"] / KIB, 2),
        "weights": weights,
        "activations": activations,
        "macs_total": sum(row["macs"] for row in table.rows),
        "peak_layer": _peak_layer(table.rows),
        "latency": _latency(table.total_seconds, model),
        "layers": table.rows,
        "budget": {
            **verdict(target, weights["weights_bytes"], activations, tool_version, calibration),
            "source": "estimator",
        },
    }
    if target == "stm32n6":  # added after the verdict, as the last key of the record's weights
        weights["npu_blob_bytes_calibrated"] = n6_blob_bytes(weights["weights_bytes"], calibration)
    result["calibration"] = calibration_record(target, calibration)
    result["elapsed_s"] = round(time.perf_counter() - started, 4)
    return result


def _check_target(target: str, tool_version: str) -> None:
    if target not in DEVICES:
        raise ValueError(f"unknown target '{target}'; expected one of {list(DEVICES)}")
    if tool_version not in RUNTIME_KIB[target]:
        raise ValueError(
            f"unknown ST runtime constants version '{tool_version}'; known: {list(RUNTIME_KIB[target])}"
        )


def _load_checked(model_path: Path, allow_float: bool) -> Graph:
    """The model's graph; a float model only when an explicit float estimate was asked for."""
    graph = load_graph(model_path)
    if not graph.is_int8 and not allow_float:
        raise NotQuantizedError(
            f"{graph.path}: the model is not int8-quantized (float weights); quantize it first or ask for an "
            "explicit float estimate (allow_float / --allow-float)"
        )
    return graph


def plan_activations(graph: Graph) -> ActivationPlans:
    """Both arena plans. Every improved plan is replayed before it is reported; a failure would be a planner
    bug, so the safe greedy figure is reported instead and the failure is recorded."""
    greedy, improved = plan_greedy(graph), plan_improved(graph)
    try:
        replay(graph, improved)
    except UnsafePlanError as error:
        return ActivationPlans(greedy, greedy, f"failed, greedy figure reported instead: {error}")
    return ActivationPlans(greedy, improved, "passed")


def layer_table(graph: Graph, latency_model: LatencyModel) -> LayerTable:
    rows, total_seconds = [], 0.0
    for op in graph.ops:  # summed in graph order, so the total is the same float on every run
        row, seconds = _layer_row(graph, op, latency_model)
        rows.append(row)
        total_seconds += seconds
    return LayerTable(rows, total_seconds)


def _layer_row(graph: Graph, op: Op, latency_model: LatencyModel) -> tuple[dict[str, Any], float]:
    macs = op_macs(graph, op)
    layer_bytes = sum(layer_weight_bytes(graph, op).values())
    seconds = latency_model.layer_seconds(op.op, macs, layer_bytes)
    out = graph.tensors[op.outputs[0]] if op.outputs else None
    io_bytes = sum(t.nbytes for t in graph.activation_inputs(op)) + sum(
        t.nbytes for t in graph.activation_outputs(op)
    )
    row = {
        "index": op.index,
        "op": op.op,
        "name": op.name,
        "macs": macs,
        "weights_bytes": layer_bytes,
        "io_bytes": io_bytes,
        "cycles": round(seconds * latency_model.clock_hz),
        "latency_ms": seconds * 1e3,
        "output_shape": list(out.shape) if out is not None else [],
    }
    return row, seconds


def _activations(plans: ActivationPlans, rows: list[dict[str, Any]]) -> dict[str, Any]:
    greedy, improved = plans.greedy, plans.improved
    peak_io = max(rows, key=lambda row: row["io_bytes"]) if rows else None
    return {
        "arena_tflm_bytes": greedy.head,
        "improved_bytes": improved.head,
        "arena_tflm_kib": round(greedy.head / KIB, 2),
        "improved_kib": round(improved.head / KIB, 2),
        "max_op_in_plus_out_bytes": peak_io["io_bytes"] if peak_io else 0,
        "max_op_in_plus_out_layer": peak_io["index"] if peak_io else None,
        "st_mcu_calibrated_bytes": round(greedy.head * ST_MCU_ACTIVATION_RATIO),
        "alignment": 16,
        "improved_replay": plans.replay_status,
        "source": "estimator",
        "notes": "arena_tflm = TFLM GreedyMemoryPlanner head (no persistent tail, no kernel scratch); improved = "
        "same planner letting row-streaming ops overwrite dying inputs (replay-checked); st_mcu_calibrated = "
        "arena_tflm x 109.57/144 (one calibration point)",
    }


def _header(graph: Graph, target: str) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "source": "estimator",
        "estimator_version": ESTIMATOR_VERSION,
        "model": str(graph.path),
        "model_format": graph.format,
        "model_sha256": sha256_file(graph.path),
        "target": target,
        "quantization": "int8" if graph.is_int8 else "float32",
    }


def _peak_layer(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The layer with the most MACs (the first of equals)."""
    if not rows:
        return None
    peak = max(rows, key=lambda row: row["macs"])
    return {"index": peak["index"], "op": peak["op"], "name": peak["name"], "macs": peak["macs"]}


def _latency(total_seconds: float, latency_model: LatencyModel) -> dict[str, Any]:
    return {
        "ms": total_seconds * 1e3,
        "cycles": round(total_seconds * latency_model.clock_hz),
        "clock_hz": latency_model.clock_hz,
        "model": latency_model.name,
        "calibration": latency_model.calibration,
        "source": "estimator",
    }
