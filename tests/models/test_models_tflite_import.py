"""The YAMNet-1024 backbone imported from the TF Hub TFLite model must reproduce that model's own
intermediate tensors (block-14 output and its global mean) on the same log-mel patch."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from aed.models import WeightsError, build_backbone, load_backbone
from aed.models.weights import YAMNET_TFLITE, load_tflite_weights


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _tensor(interpreter: Interpreter, name_prefix: str) -> np.ndarray:
    """Dequantized copy of the tensor named name_prefix (or, for fused ops, whose name starts with it + ';')."""
    for detail in interpreter.get_tensor_details():
        if detail["name"] == name_prefix or detail["name"].startswith(name_prefix + ";"):
            scale, zero_point = detail["quantization"]
            values = interpreter.get_tensor(detail["index"]).astype(np.float32)
            return (values - zero_point) * scale if scale else values
    raise AssertionError(f"no tensor {name_prefix!r}")


def test_imported_backbone_matches_tflite_intermediates(yamnet_dir: Path) -> None:
    interpreter = Interpreter(
        model_path=str(yamnet_dir / YAMNET_TFLITE), experimental_preserve_all_tensors=True
    )
    interpreter.allocate_tensors()
    t = np.arange(15600) / 16000.0
    rng = np.random.default_rng(3)
    waveform = 0.3 * np.sin(2 * np.pi * (300 + 900 * t) * t) + 0.05 * rng.normal(size=t.size)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], waveform.astype(np.float32))
    interpreter.invoke()
    patch = _tensor(interpreter, "feature_patch")  # (1, 96, 64) log-mel, frames first
    block14 = _tensor(interpreter, "tower0/network/layer27/conv/Relu6")  # last pointwise conv (layer 14)
    pooled = _tensor(interpreter, "tower0/network/layer28/reduce_mean").reshape(1, -1)
    assert patch.std() > 0.5  # a real, non-constant patch

    backbone = load_backbone("yamnet_1024")
    to_block14 = keras.Model(backbone.input, backbone.get_layer("layer14_pointwise_conv_relu").output)
    ours14 = to_block14(patch[..., None]).numpy()
    ours = backbone(patch[..., None]).numpy()
    assert ours14.shape == block14.shape == (1, 3, 2, 1024)
    # The TFLite model runs int8 activations (step 6/255 = 0.0235); the float import agrees up to that noise.
    assert _cosine(ours14, block14) > 0.99
    assert _cosine(ours, pooled) > 0.995
    assert np.abs(ours - pooled).max() < 0.25


def test_import_needs_bias_flavour(yamnet_dir: Path) -> None:
    with pytest.raises(WeightsError, match="flavour='bias'"):
        load_tflite_weights(build_backbone(2, "bn"))


def test_corrupt_tflite_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="bad.tflite"):
        load_tflite_weights(build_backbone(2, "bias"), bad, sha256=None)
