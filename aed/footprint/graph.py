"""A small, format-neutral view of an inference graph: tensors, operators in execution order, model I/O.

Both readers (.tflite and QDQ .onnx) produce this view, so the weights count, the MAC count, the planners and the
latency models never look at a file format. Activation tensors of rank 4 are always NHWC (batch 1), which is the
layout ST's and TFLM's int8 kernels use, so a "row" is one H index of a contiguous W*C slab.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any

DTYPE_SIZES = {
    "int8": 1,
    "uint8": 1,
    "bool": 1,
    "int16": 2,
    "float16": 2,
    "int32": 4,
    "float32": 4,
    "int64": 8,
    "float64": 8,
}


class ModelFormatError(ValueError):
    """The file is not a model the estimator can read (wrong format, corrupt, dynamic shapes)."""


class UnknownOpError(ValueError):
    """The graph holds an operator the estimator has no rule for; never counted as zero silently."""


class NotQuantizedError(ValueError):
    """An int8 figure was asked of a float model."""


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    is_constant: bool
    # weight | bias | other for constants (only weight and bias count as flash weights), activation otherwise
    role: str = "activation"
    quant_channels: int = 0  # number of per-channel (or per-tensor) scale entries
    buffer_id: int | None = None

    @property
    def itemsize(self) -> int:
        return DTYPE_SIZES.get(self.dtype, 4)

    @property
    def elements(self) -> int:
        return int(prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.elements * self.itemsize


@dataclass
class Op:
    index: int
    op: str  # canonical (TFLite builtin) name, e.g. CONV_2D
    name: str
    inputs: list[int]  # tensor indices, activations and constants; -1 = optional input absent
    outputs: list[int]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    path: Path
    format: str  # tflite | onnx
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]

    def tensor(self, index: int) -> Tensor:
        return self.tensors[index]

    def activation_inputs(self, op: Op) -> list[Tensor]:
        return [self.tensors[i] for i in op.inputs if i >= 0 and not self.tensors[i].is_constant]

    def constant_inputs(self, op: Op) -> list[Tensor]:
        return [self.tensors[i] for i in op.inputs if i >= 0 and self.tensors[i].is_constant]

    def activation_outputs(self, op: Op) -> list[Tensor]:
        return [self.tensors[i] for i in op.outputs if i >= 0]

    @property
    def is_int8(self) -> bool:
        """True when the compute weights are integer (int8 / uint8), i.e. the model was quantized."""
        weights = [t for t in self.tensors if t.is_constant and t.role == "weight"]
        return bool(weights) and all(t.dtype in ("int8", "uint8") for t in weights)


def same_padding(in_size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after): the extra pixel goes at the end."""
    out_size = -(-in_size // stride)
    effective = (kernel - 1) * dilation + 1
    total = max((out_size - 1) * stride + effective - in_size, 0)
    return total // 2, total - total // 2
