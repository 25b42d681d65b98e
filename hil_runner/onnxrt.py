"""Host reference inference for QDQ ONNX models (YAMNet-1024, the N6 model) with onnxruntime's CPU kernels.

Same interface as `LiteRTModel`. Default graph optimizations (QDQ pairs fused into int8 QLinear kernels, as the
evaluate step runs the model) and one intra-op thread, so the virtual board and the host reference run the identical
computation and agree bit for bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hil_runner.protocol.tensors import TensorSpec

ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int32)": "int32",
}


class OnnxModel:
    def __init__(self, model_path: Path) -> None:
        import onnxruntime as ort

        self.path = Path(model_path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: model file not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: not a loadable ONNX model: {error}") from error
        self.kernels = f"onnxruntime-{ort.__version__}-cpu"
        self.inputs = tuple(_spec(item, self.path) for item in self.session.get_inputs())
        self.outputs = tuple(_spec(item, self.path) for item in self.session.get_outputs())

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        feed = {spec.name: array for spec, array in zip(self.inputs, inputs, strict=True)}
        return [np.asarray(value) for value in self.session.run(None, feed)]


def _spec(item: Any, path: Path) -> TensorSpec:  # item: an onnxruntime NodeArg
    dtype = ORT_TYPES.get(item.type)
    if dtype is None:
        raise ValueError(f"{path}: tensor {item.name!r} has unsupported type {item.type}")
    shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in item.shape)  # symbolic batch -> 1
    return TensorSpec(name=item.name, dtype=np.dtype(dtype), shape=shape)
