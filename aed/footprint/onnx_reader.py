"""Read a QDQ .onnx model into the estimator's Graph (int8 view of the deployed network)."""

from __future__ import annotations

from pathlib import Path

from aed.footprint.graph import Graph, ModelFormatError


def read_onnx(path: Path) -> Graph:
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    try:
        model = onnx.load(str(path))
    except (DecodeError, ValueError, OSError) as error:
        raise ModelFormatError(f"{path}: not an ONNX model ({error})") from error
    if not model.graph.node:
        raise ModelFormatError(f"{path}: ONNX model has no nodes")
    raise ModelFormatError(f"{path}: ONNX QDQ reading is not implemented yet")
