"""Models for the footprint tests, built once per session: a tiny int8 net, a float net and YAMNet-256 int8.

Weights values do not matter for footprint or MACs; only int8 conversion needs a (random) calibration set.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def calibration(n: int = 4, shape: tuple[int, ...] = (64, 96, 1), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(-4.0, 2.0, size=(n, *shape)).astype(np.float32)


def tiny_keras(with_add: bool = True):
    import keras
    from keras import layers

    inputs = keras.Input((16, 12, 3))
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inputs)
    y = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    y = layers.Conv2D(8, 1, activation="relu")(y)
    if with_add:
        y = layers.Add()([x, y])
    y = layers.AveragePooling2D(2)(y)
    y = layers.GlobalAveragePooling2D()(y)
    outputs = layers.Dense(4, activation="softmax")(y)
    return keras.Model(inputs, outputs)


def _randomise(model) -> None:
    """Non-zero biases and batch-norm statistics, so the converter keeps every bias buffer (as after training)."""
    rng = np.random.default_rng(1)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            new = [
                rng.uniform(0.5, 1.5, w.shape) if "variance" in v.path else rng.normal(0, 0.1, w.shape)
                for w, v in zip(weights, layer.weights, strict=True)
            ]
            layer.set_weights([n.astype(np.float32) for n in new])


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("footprint_models")


@pytest.fixture(scope="session")
def tiny_int8(model_dir: Path) -> Path:
    from aed.quantize import to_int8_tflite

    path = model_dir / "tiny_int8.tflite"
    model = tiny_keras()
    _randomise(model)
    to_int8_tflite(model, calibration(4, (16, 12, 3)), path)
    return path


@pytest.fixture(scope="session")
def tiny_float(model_dir: Path) -> Path:
    import tensorflow as tf

    path = model_dir / "tiny_float.tflite"
    model = tiny_keras()
    _randomise(model)
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def build_yamnet(n_blocks: int):
    """The reference architecture with the project's builder; random weights (values do not matter here)."""
    from aed.models import build_yamnet_256, build_yamnet_1024

    model = (
        build_yamnet_256(10, pretrained=False) if n_blocks == 6 else build_yamnet_1024(10, pretrained=False)
    )
    _randomise(model)
    return model


@pytest.fixture(scope="session")
def yamnet256_int8(model_dir: Path) -> Path:
    from aed.quantize import to_int8_tflite

    path = model_dir / "yamnet_256_int8.tflite"
    to_int8_tflite(build_yamnet(6), calibration(4), path)
    return path


@pytest.fixture(scope="session")
def yamnet1024_int8(model_dir: Path) -> Path:
    from aed.quantize import to_int8_tflite

    path = model_dir / "yamnet_1024_int8.tflite"
    to_int8_tflite(build_yamnet(14), calibration(4), path)
    return path


def to_qdq_onnx(model, float_path: Path, qdq_path: Path | None) -> Path:
    """The project's own Keras -> ONNX (opset 17) and QDQ quantization (aed.quantize), on random calibration."""
    from aed.quantize import to_onnx
    from aed.quantize import to_qdq_onnx as quantize_qdq

    to_onnx(model, float_path, 17)
    if qdq_path is None:
        return float_path
    quantize_qdq(model, calibration(4, tuple(model.input_shape[1:])), qdq_path)
    return qdq_path


@pytest.fixture(scope="session")
def tiny_qdq(model_dir: Path) -> Path:
    model = tiny_keras()
    _randomise(model)
    return to_qdq_onnx(model, model_dir / "tiny_f32.onnx", model_dir / "tiny_qdq.onnx")


@pytest.fixture(scope="session")
def tiny_float_onnx(model_dir: Path, tiny_qdq: Path) -> Path:
    return model_dir / "tiny_f32.onnx"  # written by tiny_qdq on the way


@pytest.fixture(scope="session")
def yamnet256_qdq(model_dir: Path) -> Path:
    return to_qdq_onnx(build_yamnet(6), model_dir / "y256_f32.onnx", model_dir / "yamnet_256_qdq.onnx")


@pytest.fixture(scope="session")
def yamnet1024_qdq(model_dir: Path) -> Path:
    return to_qdq_onnx(build_yamnet(14), model_dir / "y1024_f32.onnx", model_dir / "yamnet_1024_qdq.onnx")
