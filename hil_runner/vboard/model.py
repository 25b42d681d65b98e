"""The model a virtual board holds: LiteRT interpreter (or, for runtime tflm, tflite-micro in its measured arena) +
the estimator's figures for the board's target."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aed.records import sha256_file
from hil_runner.boards.profiles import BoardProfile
from hil_runner.litert import load_reference, model_format
from hil_runner.protocol.tensors import TensorSpec
from hil_runner.vboard.tflm import TflmModel, wants_tflm

Estimator = Callable[[Path, str], dict[str, Any]]


def default_estimator(model_path: Path, target: str) -> dict[str, Any]:
    from aed.footprint import estimate  # the footprint estimator: the one source of simulated figures

    return estimate(model_path, target)


def _estimate_by_content(path: Path, target: str, estimator: Estimator) -> dict[str, Any]:
    """The estimator picks the format by file suffix, a flash slot has one fixed name: give it a correctly named
    link when the two disagree."""
    suffix = "." + model_format(path)
    if path.suffix.lower() == suffix:
        return estimator(path, target)
    with tempfile.TemporaryDirectory() as scratch:
        alias = Path(scratch) / f"model{suffix}"
        try:
            os.link(path, alias)
        except OSError:
            shutil.copyfile(path, alias)
        return estimator(alias, target)


@dataclass
class LayerTiming:
    index: int
    op: str
    name: str
    macs: int
    cycles: int
    latency_ms: float


class VirtualModel:
    def __init__(
        self,
        model_path: Path,
        profile: BoardProfile,
        estimator: Estimator | None = None,
        runtime: str = "auto",
    ) -> None:
        """`runtime`: litert (LiteRT / onnxruntime), tflm (tflite-micro), or auto: tflm for a model that carries
        TFLM's offline memory plan (`aed convert` with convert.runtime tflm), else litert."""
        self.path = Path(model_path)
        self.runtime = TflmModel(self.path) if wants_tflm(self.path, runtime) else load_reference(self.path)
        self.sha256 = sha256_file(self.path)
        estimate = _estimate_by_content(self.path, profile.estimator_target, estimator or default_estimator)
        self.estimate = estimate
        self.macs = int(estimate["macs_total"])
        self.weights_bytes = int(estimate["weights_bytes"])
        # RAM as the board's runtime needs it: TFLM's measured arena (its plan, persistent and scratch needs) when
        # the board runs TFLM, else the estimator's TFLM greedy arena
        self.activations_bytes = (
            self.runtime.arena.bytes
            if isinstance(self.runtime, TflmModel)
            else int(estimate["activations"]["arena_tflm_bytes"])
        )
        self.latency_ms = float(estimate["latency"]["ms"])
        clock_hz = float(estimate["latency"].get("clock_hz") or profile.sclock_hz)
        # Cycles at the core clock the board reports, so that cycles / sclock == duration on the host side.
        self.cycles = round(self.latency_ms * 1e-3 * profile.sclock_hz) if clock_hz else 0
        self.layers = [
            LayerTiming(
                index=int(layer["index"]),
                op=str(layer["op"]),
                name=str(layer.get("name") or f"layer_{layer['index']}"),
                macs=int(layer["macs"]),
                cycles=round(float(layer["latency_ms"]) * 1e-3 * profile.sclock_hz),
                latency_ms=float(layer["latency_ms"]),
            )
            for layer in estimate["layers"]
        ]
        mtime = dt.datetime.fromtimestamp(self.path.stat().st_mtime, dt.UTC)
        self.compile_datetime = mtime.strftime("%a %b %d %H:%M:%S %Y")

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.runtime.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.runtime.outputs

    def infer(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self.runtime.run(inputs)
