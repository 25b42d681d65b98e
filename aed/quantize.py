"""Post-training int8 quantization: full-integer TFLite (YAMNet-256) and ONNX QDQ (YAMNet-1024).

Both record the calibration set's sha256 and the input scale / zero point, so a downstream step (footprint
estimator, firmware tables, virtual board) quantizes its input exactly like the converter assumed.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

OutputType = Literal["float32", "int8"]


class QuantizationError(ValueError):
    pass


@dataclass(frozen=True)
class QuantizationInfo:
    path: str
    format: str
    size_bytes: int
    n_calibration: int
    calibration_sha256: str
    input_scale: float | None
    input_zero_point: int | None
    input_dtype: str
    output_dtype: str

    def to_dict(self) -> dict:
        return asdict(self)


def calibration_sha256(calibration: np.ndarray) -> str:
    """Hash of the calibration tensor (shape, dtype and bytes), so the record names the exact set used."""
    array = np.ascontiguousarray(calibration, dtype=np.float32)
    digest = hashlib.sha256(repr(array.shape).encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def _check_calibration(calibration: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    calibration = np.asarray(calibration, dtype=np.float32)
    if calibration.ndim == 0 or len(calibration) == 0:
        raise QuantizationError("calibration set is empty: at least one patch is needed")
    if tuple(calibration.shape[1:]) != tuple(input_shape):
        raise QuantizationError(
            f"calibration patches have shape {calibration.shape[1:]}, the model wants {input_shape}"
        )
    if not np.all(np.isfinite(calibration)):
        raise QuantizationError("calibration set contains NaN or infinite values")
    return calibration


def to_int8_tflite(
    keras_model,
    calibration: np.ndarray,
    path: Path,
    output_type: OutputType = "float32",
    per_channel: bool = True,
) -> QuantizationInfo:
    """Full-integer int8 TFLite: int8 input, float32 (reference default) or int8 output, per-channel weights.

    `calibration` is an (n, *input_shape) float32 array; each patch is fed alone, as the reference does."""
    import tensorflow as tf

    input_shape = tuple(int(d) for d in keras_model.input_shape[1:])
    calibration = _check_calibration(calibration, input_shape)

    def representative_dataset():
        for sample in calibration:
            yield [sample[None, ...]]

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    # Restrict to int8 builtins so anything that cannot be quantized fails here, not on the board.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8 if output_type == "int8" else tf.float32
    converter._experimental_disable_per_channel = not per_channel  # noqa: SLF001 - no public switch
    flatbuffer = converter.convert()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(flatbuffer)
    scale, zero_point, in_dtype, out_dtype = _tflite_io(path)
    return QuantizationInfo(
        path=str(path),
        format="tflite",
        size_bytes=len(flatbuffer),
        n_calibration=len(calibration),
        calibration_sha256=calibration_sha256(calibration),
        input_scale=scale,
        input_zero_point=zero_point,
        input_dtype=in_dtype,
        output_dtype=out_dtype,
    )


def _tflite_io(path: Path) -> tuple[float, int, str, str]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    detail_in = interpreter.get_input_details()[0]
    detail_out = interpreter.get_output_details()[0]
    scale, zero_point = detail_in["quantization"]
    return (
        float(scale),
        int(zero_point),
        np.dtype(detail_in["dtype"]).name,
        np.dtype(detail_out["dtype"]).name,
    )


def quantize_input(patches: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Host-side input quantization, as the firmware does: clip(round(x / scale + zp), -128, 127)."""
    return np.clip(np.round(patches / scale + zero_point), -128, 127).astype(np.int8)
