"""The built-in footprint / latency estimator: `estimate(model_path, target) -> dict` (JSON-ready).

Every figure it returns is computed, not measured, and carries `source: estimator`.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

from aed.footprint.budgets import DEVICES, KIB, RUNTIME_KIB, n6_blob_bytes, verdict
from aed.footprint.graph import Graph, ModelFormatError, NotQuantizedError
from aed.footprint.latency import MODELS
from aed.footprint.ops import op_macs
from aed.footprint.planner import plan_greedy, plan_improved
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


def estimate(
    model_path: Path, target: str, allow_float: bool = False, tool_version: str = "2.0.0"
) -> dict[str, Any]:
    """Weights, activations (TFLM greedy and improved planners), MACs, latency and a budget verdict.

    A float model raises NotQuantizedError unless allow_float is set; then the figures are an explicit float
    estimate (`quantization: float32`).
    """
    started = time.perf_counter()
    if target not in DEVICES:
        raise ValueError(f"unknown target '{target}'; expected one of {list(DEVICES)}")
    if tool_version not in RUNTIME_KIB[target]:
        raise ValueError(
            f"unknown ST runtime constants version '{tool_version}'; known: {list(RUNTIME_KIB[target])}"
        )
    graph = load_graph(model_path)
    quantized = graph.is_int8
    if not quantized and not allow_float:
        raise NotQuantizedError(
            f"{graph.path}: the model is not int8-quantized (float weights); quantize it first or ask for an "
            "explicit float estimate (allow_float / --allow-float)"
        )
    weights = {**count_weights(graph), "source": "estimator"}
    greedy, improved = plan_greedy(graph), plan_improved(graph)
    try:  # every improved plan is replayed before it is reported; a failure would be a planner bug
        replay(graph, improved)
        replay_status = "passed"
    except UnsafePlanError as error:
        improved, replay_status = greedy, f"failed, greedy figure reported instead: {error}"
    latency_model = MODELS[target]
    layers, total_s = [], 0.0
    for op in graph.ops:
        macs = op_macs(graph, op)
        layer_bytes = sum(layer_weight_bytes(graph, op).values())
        seconds = latency_model.layer_seconds(op.op, macs, layer_bytes)
        total_s += seconds
        out = graph.tensors[op.outputs[0]] if op.outputs else None
        io_bytes = sum(t.nbytes for t in graph.activation_inputs(op)) + sum(
            t.nbytes for t in graph.activation_outputs(op)
        )
        layers.append(
            {
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
        )
    macs_total = sum(layer["macs"] for layer in layers)
    peak = max(layers, key=lambda layer: layer["macs"]) if layers else None
    peak_io = max(layers, key=lambda layer: layer["io_bytes"]) if layers else None
    activations = {
        "arena_tflm_bytes": greedy.head,
        "improved_bytes": improved.head,
        "arena_tflm_kib": round(greedy.head / KIB, 2),
        "improved_kib": round(improved.head / KIB, 2),
        "max_op_in_plus_out_bytes": peak_io["io_bytes"] if peak_io else 0,
        "max_op_in_plus_out_layer": peak_io["index"] if peak_io else None,
        "st_mcu_calibrated_bytes": round(greedy.head * ST_MCU_ACTIVATION_RATIO),
        "alignment": 16,
        "improved_replay": replay_status,
        "source": "estimator",
        "notes": "arena_tflm = TFLM GreedyMemoryPlanner head (no persistent tail, no kernel scratch); improved = "
        "same planner letting row-streaming ops overwrite dying inputs (replay-checked); st_mcu_calibrated = "
        "arena_tflm x 109.57/144 (one calibration point)",
    }
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "source": "estimator",
        "estimator_version": ESTIMATOR_VERSION,
        "model": str(graph.path),
        "model_format": graph.format,
        "model_sha256": sha256_file(graph.path),
        "target": target,
        "quantization": "int8" if quantized else "float32",
        "weights_bytes": weights["weights_bytes"],
        "weights_kib": round(weights["weights_bytes"] / KIB, 2),
        "weights": weights,
        "activations": activations,
        "macs_total": macs_total,
        "peak_layer": {"index": peak["index"], "op": peak["op"], "name": peak["name"], "macs": peak["macs"]}
        if peak
        else None,
        "latency": {
            "ms": total_s * 1e3,
            "cycles": round(total_s * latency_model.clock_hz),
            "clock_hz": latency_model.clock_hz,
            "model": latency_model.name,
            "calibration": latency_model.calibration,
            "source": "estimator",
        },
        "layers": layers,
        "budget": {
            **verdict(target, weights["weights_bytes"], activations, tool_version),
            "source": "estimator",
        },
    }
    if target == "stm32n6":
        result["weights"]["npu_blob_bytes_calibrated"] = n6_blob_bytes(weights["weights_bytes"])
    result["elapsed_s"] = round(time.perf_counter() - started, 4)
    return result
