"""HIL test fixtures: a small int8 TFLite model (Keras 3 + TFLiteConverter, random representative data), a
synthetic patch store, and in-process virtual boards (threads on ptys) that are always closed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from aed.patchstore import write_patch_store

CLASSES = [f"class_{i}" for i in range(10)]


def tiny_keras_model(seed: int):
    """A 5-op YAMNet-like float model on 64x96x1 patches (conv s2, depthwise, pointwise, GAP, dense+softmax)."""
    import keras

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = layers.Input((64, 96, 1))
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inputs)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(16, 1, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(len(CLASSES), activation="softmax")(x)
    return keras.Model(inputs, outputs)


def build_tiny_int8(path: Path, seed: int = 0, output_type: str = "float32") -> Path:
    """A 5-op YAMNet-like int8 model on 64x96x1 patches (conv s2, depthwise, pointwise, GAP, dense+softmax)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(tiny_keras_model(seed))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(seed)
    converter.representative_dataset = lambda: (
        [rng.normal(size=(1, 64, 96, 1)).astype(np.float32)] for _ in range(16)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    if output_type == "int8":
        converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_int8(tmp_path_factory.mktemp("models") / "tiny_int8.tflite")


@pytest.fixture(scope="session")
def tiny_model_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same architecture, other weights: a different model (sha256, outputs)."""
    return build_tiny_int8(tmp_path_factory.mktemp("models") / "tiny_int8_b.tflite", seed=1)


@pytest.fixture(scope="session")
def patch_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 clips x 3 patches, split test, random log-mel-like values."""
    root = tmp_path_factory.mktemp("patches")
    rng = np.random.default_rng(0)
    clips = []
    for number in range(6):
        meta = {"clip_id": f"clip{number}", "label": CLASSES[number % 3], "fold": 1, "split": "test"}
        clips.append((meta, rng.normal(size=(3, 64, 96, 1)).astype(np.float32)))
    write_patch_store(root, clips, CLASSES)
    return root


@pytest.fixture
def vboard_factory():
    """Start in-process virtual boards; every one is closed at teardown."""
    from hil_runner.boards.profiles import get_profile
    from hil_runner.vboard.faults import parse_faults
    from hil_runner.vboard.server import VirtualBoard

    boards = []

    def start(profile: str = "b-u585i-iot02a", model: Path | None = None, slot: Path | None = None,
              faults: list[str] | None = None, tcp: bool = False) -> VirtualBoard:  # fmt: skip
        board = VirtualBoard(get_profile(profile), model_path=model, slot=slot, faults=parse_faults(faults))
        boards.append(board)
        board.serve_tcp() if tcp else board.serve_pty()
        return board

    yield start
    for board in boards:
        board.close()


@pytest.fixture(scope="session")
def tiny_qdq_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny architecture as a QDQ ONNX model (the YAMNet-1024 / N6 format), via aed.quantize.to_qdq_onnx."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from aed.quantize import to_qdq_onnx

    calibration = np.random.default_rng(2).normal(size=(16, 64, 96, 1)).astype(np.float32)
    path = tmp_path_factory.mktemp("onnx") / "tiny_qdq.onnx"
    to_qdq_onnx(tiny_keras_model(2), calibration, path)
    return path
