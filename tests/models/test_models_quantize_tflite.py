from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from aed.models import build_yamnet_256
from aed.quantize import QuantizationError, quantize_input, to_int8_tflite


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    detail_in, detail_out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = detail_in["quantization"]
    outputs = []
    for patch in x:
        interpreter.set_tensor(detail_in["index"], quantize_input(patch[None], scale, zero_point))
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(detail_out["index"])[0])
    return np.stack(outputs)


def test_int8_tflite_matches_float(yamnet_dir: Path, tmp_path: Path) -> None:
    model = build_yamnet_256(10)
    rng = np.random.default_rng(0)
    calibration = rng.normal(-4.0, 2.0, size=(32, 64, 96, 1)).astype(np.float32)
    info = to_int8_tflite(model, calibration, tmp_path / "m.tflite")
    assert info.input_dtype == "int8" and info.output_dtype == "float32"
    assert info.n_calibration == 32 and len(info.calibration_sha256) == 64
    assert 150_000 < info.size_bytes < 250_000  # the reference release is 185 872 B
    x = rng.normal(-4.0, 2.0, size=(8, 64, 96, 1)).astype(np.float32)
    quantized = _run(tmp_path / "m.tflite", x)
    reference = model.predict(x, verbose=0)
    assert np.abs(quantized - reference).max() < 0.05


def test_int8_output_option(yamnet_dir: Path, tmp_path: Path) -> None:
    info = to_int8_tflite(
        build_yamnet_256(3), np.zeros((2, 64, 96, 1), np.float32) - 3, tmp_path / "o.tflite", "int8"
    )
    assert info.output_dtype == "int8"


def test_empty_calibration_is_refused(tmp_path: Path) -> None:
    model = build_yamnet_256(3, pretrained=False)
    with pytest.raises(QuantizationError, match="empty"):
        to_int8_tflite(model, np.zeros((0, 64, 96, 1), np.float32), tmp_path / "x.tflite")
