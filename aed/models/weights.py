"""Pretrained YAMNet weights into the Keras backbones of aed.models.yamnet.

- Keras-2 HDF5 files (ST's yamnet_256_f32.h5, Google's yamnet.h5): read with h5py and copied by layer name,
  because Keras 3 cannot load them (their layer names contain "/").
- The TF Hub TFLite YAMNet: int8 kernels dequantized with their per-channel scales, int32 biases (batch norm
  already folded in) dequantized, loaded into the "bias" flavour (ReLU6) of the backbone.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import keras
import numpy as np

# The mirror lookup has no Keras, so a step checks its assets before importing TensorFlow; re-exported here.
from aed.models.mirror import (
    YAMNET_256_H5,
    YAMNET_256_H5_SHA256,
    YAMNET_TFLITE,
    YAMNET_TFLITE_SHA256,
    WeightsError,
    models_mirror,
)
from aed.records import sha256_file

__all__ = [
    "YAMNET_256_H5",
    "YAMNET_256_H5_SHA256",
    "YAMNET_TFLITE",
    "YAMNET_TFLITE_SHA256",
    "WeightsError",
    "check_sha256",
    "load_h5_weights",
    "load_tflite_weights",
    "load_yamnet_256_weights",
    "models_mirror",
    "read_h5_arrays",
    "read_tflite_yamnet",
]

# layerN/<op>/[bn/]<param>:0 at the end of an HDF5 dataset path, whatever the prefix (model_2/, layer1/conv/...).
_H5_KEY = re.compile(r"(layer\d+)/(conv|depthwise_conv|pointwise_conv)/(bn/)?([a-z_]+):0$")


def check_sha256(path: Path, expected: str | None) -> None:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if expected:
        actual = sha256_file(path)
        if actual != expected:
            raise WeightsError(f"{path}: sha256 {actual} does not match the pinned {expected}")


def read_h5_arrays(path: Path) -> dict[str, np.ndarray]:
    """All YAMNet conv/bn arrays of a Keras-2 HDF5 file, keyed by Keras-3 weight name
    (`layer2_depthwise_conv/depthwise_kernel`, `layer2_depthwise_conv_bn/moving_mean`)."""
    arrays: dict[str, np.ndarray] = {}

    def visit(name: str, obj: object) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        match = _H5_KEY.search(name)
        if match is None:
            return
        block, op, bn, param = match.groups()
        layer = f"{block}_{op}" + ("_bn" if bn else "")
        param = "kernel" if param == "depthwise_kernel" else param  # Keras 3 names it `kernel`
        arrays[f"{layer}/{param}"] = np.asarray(obj[()], dtype=np.float32)

    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(visit)
    except OSError as error:
        raise WeightsError(f"{path}: not a readable HDF5 file ({error})") from error
    if not arrays:
        raise WeightsError(
            f"{path}: no YAMNet layer weights (layerN/conv|depthwise_conv|pointwise_conv) found"
        )
    return arrays


def _assign(layer: keras.layers.Layer, values: dict[str, np.ndarray], source: Path) -> None:
    for variable in layer.weights:
        key = f"{layer.name}/{variable.name}"
        if key not in values:
            raise WeightsError(f"{source}: no array for layer {layer.name!r} weight {variable.name!r}")
        array = values[key]
        if tuple(array.shape) != tuple(variable.shape):
            raise WeightsError(
                f"{source}: layer {layer.name!r} weight {variable.name!r} has shape {tuple(array.shape)}, "
                f"the model expects {tuple(variable.shape)}"
            )
        variable.assign(array)


def load_h5_weights(backbone: keras.Model, path: Path, sha256: str | None = None) -> int:
    """Copy conv / batch-norm arrays by name into a "bn"-flavour backbone; returns the number of arrays."""
    check_sha256(path, sha256)
    values = read_h5_arrays(path)
    count = 0
    for layer in backbone.layers:
        if layer.weights:
            _assign(layer, values, Path(path))
            count += len(layer.weights)
    return count


def load_yamnet_256_weights(backbone: keras.Model, path: Path | None = None) -> int:
    """ST's YAMNet-256 backbone (the mirror's copy by default, sha256-checked)."""
    return load_h5_weights(
        backbone, Path(path) if path else models_mirror() / YAMNET_256_H5, YAMNET_256_H5_SHA256
    )


def read_tflite_yamnet(path: Path, sha256: str | None = YAMNET_TFLITE_SHA256) -> list[dict[str, np.ndarray]]:
    """Dequantized (kernel, bias) of the TFLite YAMNet's 27 conv / depthwise ops, in graph order, already in
    Keras layout: conv (kh, kw, in, out), depthwise (kh, kw, C, 1)."""
    from ai_edge_litert.interpreter import Interpreter

    check_sha256(path, sha256)
    try:
        interpreter = Interpreter(model_path=str(path))
    except (ValueError, RuntimeError) as error:
        raise WeightsError(f"{path}: not a readable TFLite model ({error})") from error
    tensors = {detail["index"]: detail for detail in interpreter.get_tensor_details()}
    units: list[dict[str, np.ndarray]] = []
    for op in interpreter._get_ops_details():  # noqa: SLF001 - the public API has no graph walk
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        weight_index, bias_index = int(op["inputs"][1]), int(op["inputs"][2])
        kernel = _dequantize(interpreter.get_tensor(weight_index), tensors[weight_index], axis=0)
        bias = _dequantize(interpreter.get_tensor(bias_index), tensors[bias_index], axis=0)
        # conv (out, kh, kw, in) -> (kh, kw, in, out); depthwise (1, kh, kw, C) -> (kh, kw, C, 1)
        kernel = kernel.transpose(1, 2, 3, 0)
        units.append({"op": op["op_name"], "kernel": kernel, "bias": bias})
    return units


def _dequantize(values: np.ndarray, detail: dict, axis: int) -> np.ndarray:
    params = detail["quantization_parameters"]
    scales, zero_points = params["scales"], params["zero_points"]
    values = values.astype(np.float64)
    if scales.size == 0:
        return values.astype(np.float32)
    if scales.size == 1:
        return ((values - zero_points[0]) * scales[0]).astype(np.float32)
    quantized_axis = int(params.get("quantized_dimension", axis))
    shape = [1] * values.ndim
    shape[quantized_axis] = scales.size
    return ((values - zero_points.reshape(shape)) * scales.reshape(shape)).astype(np.float32)


def load_tflite_weights(
    backbone: keras.Model, path: Path | None = None, sha256: str | None = YAMNET_TFLITE_SHA256
) -> int:
    """Fill a "bias"-flavour backbone (any number of blocks) from the TF Hub TFLite YAMNet."""
    path = Path(path) if path else models_mirror() / YAMNET_TFLITE
    units = read_tflite_yamnet(path, sha256)
    conv_layers = [
        layer
        for layer in backbone.layers
        if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D)
    ]
    if len(conv_layers) > len(units):
        raise WeightsError(f"{path}: {len(units)} conv ops, the backbone needs {len(conv_layers)}")
    for layer, unit in zip(conv_layers, units, strict=False):
        is_depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        if is_depthwise != (unit["op"] == "DEPTHWISE_CONV_2D"):
            raise WeightsError(f"{path}: op {unit['op']} does not fit layer {layer.name!r}")
        if not layer.use_bias:
            raise WeightsError(f"layer {layer.name!r} has no bias: build the backbone with flavour='bias'")
        _assign(layer, {f"{layer.name}/kernel": unit["kernel"], f"{layer.name}/bias": unit["bias"]}, path)
    return 2 * len(conv_layers)
