"""Open footprint / latency estimator for int8 .tflite and QDQ .onnx models (no ST tools needed)."""

from aed.footprint.estimator import SCHEMA_VERSION, TARGETS, estimate, load_graph
from aed.footprint.graph import ModelFormatError, NotQuantizedError, UnknownOpError

__all__ = [
    "SCHEMA_VERSION",
    "TARGETS",
    "ModelFormatError",
    "NotQuantizedError",
    "UnknownOpError",
    "estimate",
    "load_graph",
]
