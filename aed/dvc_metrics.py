"""The compact figures that DVC compares (`dvc metrics show`, `dvc exp show`), taken from the steps' records.

A record keeps everything (input hashes, tool versions, per-split figures, notes); DVC prints every flattened key
of every metrics file as a column, so the files it lists hold only the figures people compare across runs:
accuracies, agreement, latency, RAM and flash. Every model's file uses the same keys, so each figure is one
column whatever the number of models, and the table stays narrow (tests/test_dvc_metrics.py measures it).

Units are in the key: bytes for memory (the figures the gate compares, `hil_runner.gate`), milliseconds for
latency. Values are rounded so a re-run that changes nothing prints nothing new.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from aed.records import write_json

FLOAT_FORMAT = "float32"
EVALUATION_FIGURES = frozenset({"float_acc", "int8_acc", "agreement"})
ACCURACY_DIGITS = 4
LATENCY_DIGITS = 2


class FiguresError(ValueError):
    """A record without the figures its step always writes: one line, the CLI exits 2."""


def evaluation_figures(model_metrics: dict[str, Any]) -> dict[str, float]:
    """One model's entry of evaluate's metrics (`ModelEvaluation.metrics()`): the mean clip accuracy of the
    float model and of its int8 model, and how often the two agree on the top class."""
    figures: dict[str, float] = {}
    for fmt, summary in model_metrics.items():
        if not isinstance(summary, dict) or "clip_accuracy" not in summary:
            continue  # int8_vs_float
        key = "float_acc" if fmt == FLOAT_FORMAT else "int8_acc"
        accuracy = summary["clip_accuracy"]
        if not isinstance(accuracy, dict):
            raise FiguresError(
                f"{fmt}.clip_accuracy: expected per-split figures and a mean, found {accuracy!r}"
            )
        figures[key] = _fraction(accuracy.get("mean"), f"{fmt}.clip_accuracy.mean")
    agreement = model_metrics.get("int8_vs_float")
    if isinstance(agreement, dict):
        figures["agreement"] = _fraction(agreement.get("top1_agreement"), "int8_vs_float.top1_agreement")
    return figures


def convert_figures(record: dict[str, Any]) -> dict[str, float | int]:
    """convert's record (stedgeai or the estimator): flash (weights), RAM (activations) and latency."""
    figures: dict[str, float | int] = {
        "flash_bytes": _integer(record, "weights_bytes"),
        "ram_bytes": _integer(record, "activations_bytes"),
    }
    if record.get("latency_ms") is not None:
        figures["latency_ms"] = _duration(record["latency_ms"], "latency_ms")
    return figures


def hil_figures(record: dict[str, Any]) -> dict[str, float | int]:
    """A HIL record's `metrics`: clip accuracy on the board, agreement with the host's int8 run, median
    latency, RAM (activations) and flash (weights) as the gate compares them."""
    metrics = record.get("metrics")
    if not isinstance(metrics, dict):
        raise FiguresError("metrics: missing from the HIL record")
    return {
        "board_acc": _fraction(_field(metrics, "clip_accuracy"), "metrics.clip_accuracy"),
        "agreement": _fraction(_field(metrics, "top1_agreement"), "metrics.top1_agreement"),
        "latency_ms": _duration(_field(metrics, "latency_median_ms"), "metrics.latency_median_ms"),
        "ram_bytes": _integer(metrics, "activations_bytes"),
        "flash_bytes": _integer(metrics, "weights_bytes"),
    }


def write_figures(path: Path, figures: dict[str, Any]) -> None:
    write_json(Path(path), figures)


def _field(data: dict[str, Any], key: str) -> Any:
    if key not in data:
        raise FiguresError(f"{key}: missing from the record")
    return data[key]


def _integer(data: dict[str, Any], key: str) -> int:
    value = _field(data, key)
    if _not_finite(value) or value < 0 or value != int(value):
        raise FiguresError(f"{key}: {value!r} is not a number of bytes")
    return int(value)


def _fraction(value: Any, name: str) -> float:
    """An accuracy or an agreement: a share between 0 and 1."""
    if _not_finite(value) or not 0 <= value <= 1:
        raise FiguresError(f"{name}: {value!r} is not a fraction between 0 and 1")
    return round(float(value), ACCURACY_DIGITS)


def _duration(value: Any, name: str) -> float:
    if _not_finite(value) or value < 0:
        raise FiguresError(f"{name}: {value!r} is not a duration in milliseconds")
    return round(float(value), LATENCY_DIGITS)


def _not_finite(value: Any) -> bool:
    return isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
