"""Detection fixtures: a two-class model whose answer is known (class `low` for sound below ~1 kHz, `high` above),
as a float .keras, an int8 .tflite and an ONNX file; a params file naming its classes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import REPO

CLASSES = ["high", "low"]  # the model's output order (sorted, as class_order gives it)
LOW_BANDS = 24  # mel bands 0..23 lie below about 1 kHz
GAIN = 4.0  # softmax(GAIN * (mean log-mel of one band group - the other's)): a tone gives p > 0.99


def band_weights() -> np.ndarray:
    """(64 * 96, 2): output 0 (high) = mean high-band log-mel - mean low-band, output 1 the opposite."""
    per_band = np.where(np.arange(64) < LOW_BANDS, -1.0 / LOW_BANDS, 1.0 / (64 - LOW_BANDS)) / 96
    column = np.repeat(per_band, 96) * GAIN  # row-major (band, frame) flattening of a 64 x 96 patch
    return np.stack([column, -column], axis=1).astype(np.float32)


def keras_model():
    import keras

    inputs = keras.layers.Input((64, 96, 1))
    flat = keras.layers.Flatten()(inputs)
    dense = keras.layers.Dense(2, activation="softmax")
    model = keras.Model(inputs, dense(flat))
    dense.set_weights([band_weights(), np.zeros(2, np.float32)])
    return model


def write_int8_tflite(model, path: Path) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([patch[None]] for patch in calibration_patches())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    path.write_bytes(converter.convert())
    return path


def calibration_patches() -> np.ndarray:
    """Patches of low and high tones and near-silence: the ranges the int8 model must represent."""
    from aed.features import FeatureConfig, log_mel, to_patches

    config = FeatureConfig(remove_silence=False)
    signals = [tone_at(f, 1.0, amplitude=a) for f in (200, 400, 3000, 6000) for a in (0.05, 0.5)]
    signals.append(quiet(1.0))
    return np.concatenate([to_patches(log_mel(signal, config), config) for signal in signals])


def write_onnx(path: Path, n_outputs: int = 2, softmax: bool = True, bands: int = 64) -> Path:
    """The same arithmetic as an ONNX graph (dynamic batch): reshape, matmul, softmax (or raw logits; or
    patches of another number of mel bands, for the refusals)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = (
        band_weights() if (n_outputs, bands) == (2, 64) else np.zeros((bands * 96, n_outputs), np.float32)
    )
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["patches", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)
            if softmax
            else helper.make_node("Mul", ["logits", "ten"], ["probs"]),
        ],
        "bands",
        [helper.make_tensor_value_info("patches", TensorProto.FLOAT, ["n", bands, 96, 1])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", n_outputs])],
        [
            numpy_helper.from_array(np.array([-1, bands * 96], np.int64), "shape"),
            numpy_helper.from_array(np.array(10.0, np.float32), "ten"),
            numpy_helper.from_array(weights, "weights"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def band_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"keras": .keras, "tflite": int8 .tflite, "onnx": .onnx} of the two-class band model."""
    folder = tmp_path_factory.mktemp("band-models")
    model = keras_model()
    model.save(folder / "model.keras")
    return {
        "keras": folder / "model.keras",
        "tflite": write_int8_tflite(model, folder / "model_int8.tflite"),
        "onnx": write_onnx(folder / "model.onnx"),
    }


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    """The repository's params.yaml with validate.classes set to the band model's classes."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["validate"]["classes"] = list(CLASSES)
    # no smoothing or merging: each window's decision is visible in the events
    params["detect"].update(smoothing_windows=1, on_threshold=0.8, off_threshold=0.7, merge_gap_s=0.0)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def tone_at(frequency: float, seconds: float, sample_rate: int = 16000, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def quiet(seconds: float, sample_rate: int = 16000) -> np.ndarray:
    """Digital silence: every band at ln(1e-4), so neither class wins (p 0.5 each, about 0.6 / 0.4 in int8)."""
    return np.zeros(int(round(seconds * sample_rate)), np.float32)
