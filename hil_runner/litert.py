"""Host reference inference with LiteRT's reference kernels (BUILTIN_REF), the golden MCU-parity kernels.

LiteRT 2.3's reference resolver aborts the whole process (SIGABRT, no Python exception) on some graphs. So the
resolver is probed once per model in a child process; if the probe dies, both the host reference and the virtual
board fall back to the builtin kernels without delegates and say so in `kernels`, so that outputs still come from
identical kernels on both sides and the record shows which ones.
"""

from __future__ import annotations

import functools
import logging
import subprocess
import sys
from pathlib import Path
from typing import Protocol

import numpy as np

from aed.records import sha256_file
from hil_runner.protocol.tensors import TensorSpec

log = logging.getLogger(__name__)

REF, BUILTIN = "BUILTIN_REF", "BUILTIN_WITHOUT_DEFAULT_DELEGATES"
PROBE_TIMEOUT = 120.0

_PROBE = """
import sys
from ai_edge_litert.interpreter import Interpreter, OpResolverType
it = Interpreter(model_path=sys.argv[1], experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
it.allocate_tensors()
it.invoke()
"""


@functools.cache
def _kernels_for(model_sha256: str, model_path: str) -> str:
    del model_sha256  # cache key only: same bytes, same verdict
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PROBE, model_path],
            capture_output=True,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"{model_path}: LiteRT probe did not finish in {PROBE_TIMEOUT:.0f} s") from error
    if result.returncode == 0:
        return REF
    log.warning(
        "%s: LiteRT reference kernels crashed (exit %s); using builtin kernels on host and virtual board",
        model_path,
        result.returncode,
    )
    return BUILTIN


def kernels_for(model_path: Path) -> str:
    return _kernels_for(sha256_file(model_path), str(Path(model_path).resolve()))


class LiteRTModel:
    """A TFLite model with its input/output specs; `run` takes and returns arrays in the model's own dtypes."""

    def __init__(self, model_path: Path, kernels: str | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.path = Path(model_path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: model file not found")
        self.kernels = kernels or kernels_for(self.path)
        try:
            self.interpreter = Interpreter(
                model_path=str(self.path), experimental_op_resolver_type=getattr(OpResolverType, self.kernels)
            )
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"{self.path}: not a loadable TFLite model: {error}") from error
        self.input_details = self.interpreter.get_input_details()
        self.output_details = self.interpreter.get_output_details()
        self.inputs = tuple(_spec(d) for d in self.input_details)
        self.outputs = tuple(_spec(d) for d in self.output_details)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        for detail, array in zip(self.input_details, inputs, strict=True):
            self.interpreter.set_tensor(detail["index"], array)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(d["index"]).copy() for d in self.output_details]


def _spec(detail: dict) -> TensorSpec:
    scale, zero_point = detail["quantization"]
    return TensorSpec(
        name=str(detail["name"]),
        dtype=np.dtype(detail["dtype"]),
        shape=tuple(int(d) for d in detail["shape"]),
        scale=float(scale),
        zero_point=int(zero_point),
    )


class ReferenceModel(Protocol):
    """What the job and the virtual board need from a runtime."""

    path: Path
    kernels: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]: ...


def model_format(model_path: Path) -> str:
    """ "tflite" for a TFLite flatbuffer (identifier "TFL3" at offset 4), else "onnx"."""
    path = Path(model_path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: model file not found")
    with open(path, "rb") as handle:
        return "tflite" if handle.read(8)[4:8] == b"TFL3" else "onnx"


def load_reference(model_path: Path) -> ReferenceModel:
    """The reference runtime for a model file, chosen by content (a flash slot keeps one file name whatever it
    holds): LiteRT for a TFLite flatbuffer (identifier "TFL3"), onnxruntime for anything else (QDQ ONNX)."""
    if model_format(model_path) == "onnx":
        from hil_runner.onnxrt import OnnxModel

        return OnnxModel(model_path)
    return LiteRTModel(model_path)
