"""Synthetic HIL records and gate verdicts for the gate and promote tests: schema-valid by construction, so that
each test changes exactly one thing. Real records from a virtual-board run are used where the run matters."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

CLASSES10 = ["chainsaw", "clock_tick", "crackling_fire", "crying_baby", "dog", "helicopter", "rain", "rooster",
             "sea_waves", "sneezing"]  # fmt: skip


def _hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def synthetic_record(
    model_sha256: str | None = None, model_path: str = "model_int8.tflite"
) -> dict[str, Any]:
    """A virtual-board HIL record of a 10-class model on the U5, as hil_runner.job writes it."""
    model_sha256 = model_sha256 or _hex("model")
    runtime = "virtual board (b-u585i-iot02a, BUILTIN_REF)"
    key = {
        "profile": "b-u585i-iot02a", "device_id": "0x482", "sclock_hz": 160_000_000, "runtime_version": "10.2.0",
        "tool_version": "2.0.0", "kernels": "BUILTIN_REF", "host_litert": "2.3.0", "source": "virtual",
        "board": "vb0", "class_names": list(CLASSES10), "eval_set_sha256": _hex("eval"), "eval_patches": 172,
        "frontend_sha256": _hex("frontend"), "dataset_sha256": _hex("dataset"), "model_format": "tflite",
        "runtime": runtime,
    }  # fmt: skip
    metrics = {
        "clip_accuracy": 0.95, "host_clip_accuracy": 0.95, "top1_agreement": 1.0, "cosine_min": 0.99999,
        "l2r_max": 0.001, "latency_median_ms": 280.0, "cycles_median": 44_800_000, "weights_bytes": 139_176,
        "activations_bytes": 147_456, "macs": 23_927_296,
    }  # fmt: skip
    return {
        "schema_version": 1, "kind": "hil", "created": "2026-11-30T00:00:00+00:00",
        "inputs": {"model": model_sha256, "patches": _hex("patches")}, "tools": {"python": "3.11"},
        "source": "virtual", "model_sha256": model_sha256,
        "model": {"path": model_path, "signature": model_sha256, "signature_verified": True, "n_nodes": 16},
        "board": {"name": "vb0", "profile": "b-u585i-iot02a", "via": "local", "descriptor": "serial:/dev/pts/1",
                  "device_id": "0x482", "device": "STM32U575/585", "sclock_hz": 160_000_000,
                  "hclock_hz": 160_000_000, "extra": [], "cache": "0x04010200", "virtual": True},
        "firmware": {"protocol_version": "3.1", "runtime": "STM.AI / GCC", "runtime_version": "10.2.0",
                     "tool_version": "2.0.0", "rtid": "0x010101", "compile_datetime": "x", "runtime_desc": runtime},
        "key": key, "metrics": metrics,
        "accuracy": {"clip_accuracy": 0.95, "host_clip_accuracy": 0.95, "n_clips": 40, "n_patches": 172,
                     "class_names": list(CLASSES10)},
        "latency": {"median_ms": 280.0, "source": "virtual"},
        "memory": {"weights_bytes": 139_176, "activations_bytes": 147_456, "source": "virtual"},
        "layers": [], "failed_attempts": [],
    }  # fmt: skip


def set_metric(record: dict, name: str, value: Any) -> dict:
    """Change a metric everywhere the job writes it (metrics, and the accuracy section's copy)."""
    record["metrics"][name] = value
    if name in record["accuracy"]:
        record["accuracy"][name] = value
    return record


def set_key(record: dict, name: str, value: Any) -> dict:
    """Change a key field and the copies the job writes elsewhere, so that the record stays self-consistent."""
    record["key"][name] = value
    copies = {"profile": ("board", "profile"), "device_id": ("board", "device_id"),
              "sclock_hz": ("board", "sclock_hz"), "board": ("board", "name"),
              "class_names": ("accuracy", "class_names"), "eval_patches": ("accuracy", "n_patches"),
              "runtime": ("firmware", "runtime_desc")}  # fmt: skip
    if name in copies:
        section, field = copies[name]
        record[section][field] = value
    return record


def as_board(record: dict) -> dict:
    """The same record as consistent real-board evidence (every virtual-board signal changed)."""
    record = copy.deepcopy(record)
    for section in (record, record["key"], record["latency"], record["memory"]):
        section["source"] = "board"
    record["board"]["virtual"] = False
    set_key(record, "runtime", "X-CUBE-AI 10.2.0 (GCC)")
    return record


def write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path
