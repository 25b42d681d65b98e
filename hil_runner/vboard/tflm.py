"""The virtual board's TensorFlow Lite Micro runtime: the model runs in the tflite-micro interpreter (TFLM's
reference kernels) in exactly the arena TFLM needs for it, so the memory figure the board reports is the one its
runtime would configure. With an offline-planned model (`<model>_tflm.tflite` from `aed convert`, runtime tflm)
that is the planned arena.

TFLM's reference kernels give the same int8 results as LiteRT's BUILTIN_REF kernels the host runs, so host
agreement stays bit-exact. A board running CMSIS-NN kernels is not what this emulates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aed.footprint.tflm import (
    KERNELS,
    TflmError,
    captured_stderr,
    load_interpreter,
    read_offline_offsets,
    smallest_arena,
)
from hil_runner.protocol.tensors import TensorSpec

RUNTIMES = ("auto", "litert", "tflm")


def wants_tflm(model_path: Path, runtime: str) -> bool:
    """tflm: always; litert: never; auto: when the model carries TFLM's offline memory plan."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown virtual-board runtime '{runtime}'; expected one of {list(RUNTIMES)}")
    if runtime != "auto":
        return runtime == "tflm"
    try:
        return read_offline_offsets(Path(model_path)) is not None
    except Exception:  # not a TFLite flatbuffer (an ONNX model): LiteRT / onnxruntime decide
        return False


class TflmModel:
    """A .tflite model in the tflite-micro interpreter, in the smallest arena that allocates it."""

    kernels = KERNELS

    def __init__(self, model_path: Path) -> None:
        self.path = Path(model_path)
        data = self.path.read_bytes()
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise ValueError(f"{self.path}: the TFLM runtime takes int8 .tflite models only")
        self.arena = smallest_arena(data)
        self.interpreter = load_interpreter(data, self.arena.bytes)
        if self.interpreter is None:
            raise TflmError(f"{self.path}: tflite-micro cannot allocate the model in {self.arena.bytes:,} B")
        self.inputs = tuple(self._spec("input", i) for i in range(self._count("input")))
        self.outputs = tuple(self._spec("output", i) for i in range(self._count("output")))

    def _count(self, kind: str) -> int:
        count = 0
        while True:
            try:
                with captured_stderr():  # the wrapper prints the out-of-range index before raising
                    getattr(self.interpreter, f"get_{kind}_details")(count)
            except (IndexError, RuntimeError, ValueError):
                return count
            count += 1

    def _spec(self, kind: str, index: int) -> TensorSpec:
        detail = getattr(self.interpreter, f"get_{kind}_details")(index)
        quant = detail["quantization_parameters"]
        scales, zero_points = quant["scales"], quant["zero_points"]
        return TensorSpec(
            name=f"{kind}_{index}",
            dtype=np.dtype(detail["dtype"]),
            shape=tuple(int(d) for d in detail["shape"]),
            scale=float(scales[0]) if len(scales) else 0.0,
            zero_point=int(zero_points[0]) if len(zero_points) else 0,
        )

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        for index, array in enumerate(inputs):
            self.interpreter.set_input(array, index)
        self.interpreter.invoke()
        return [np.array(self.interpreter.get_output(i), copy=True) for i in range(len(self.outputs))]
