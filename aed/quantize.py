"""Post-training int8 quantization: full-integer TFLite (YAMNet-256) and ONNX QDQ (YAMNet-1024).

Both record the calibration set's sha256 and the input scale / zero point, so a downstream step (footprint
estimator, firmware tables, virtual board) quantizes its input exactly like the converter assumed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from aed.artifacts import INT8_MODEL_FILE
from aed.params import bounded

OutputType = Literal["float32", "int8"]


class QuantizationError(ValueError):
    pass


@dataclass(frozen=True)
class QuantizeParams:
    """The `quantize` section: calibration, TFLite / ONNX options and the int8 format of each model."""

    calibration_size: int = bounded(200, 0, 100_000)  # patches; the reference uses about 190
    seed: int = 120
    output_type: OutputType = "float32"  # TFLite output (the reference leaves it float32)
    per_channel: bool = True
    opset: int = bounded(17, 13, 21)
    # ONNX QDQ: the reference averages per-sample min/max (CalibMovingAverage); that clipped the input range to
    # about half and lowered float/int8 agreement on validation clips from 99.4 % to 96.3 % (docs/models.md).
    calib_moving_average: bool = False
    formats: dict[str, str] = field(
        default_factory=lambda: {"yamnet_256": "tflite", "yamnet_1024": "onnx_qdq"}
    )

    def format_for(self, model_name: str) -> str:
        fmt = self.formats.get(model_name)
        if fmt not in INT8_MODEL_FILE:
            raise QuantizationError(
                f"quantize.formats.{model_name}: expected one of {list(INT8_MODEL_FILE)}, got {fmt!r}"
            )
        return fmt


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
    # The converter exports a SavedModel first and prints its whole signature to stdout: keep the CLI readable.
    with contextlib.redirect_stdout(io.StringIO()):
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


# Ops quantized in the QDQ model; Softmax stays float as in the reference (§9.3).
QDQ_OP_TYPES = [
    "Conv",
    "Relu",
    "Clip",
    "Squeeze",
    "GlobalAveragePool",
    "Gemm",
    "MatMul",
    "Transpose",
    "ReduceMean",
]


def to_onnx(keras_model, path: Path, opset: int = 17) -> Path:
    """Keras -> ONNX with tf2onnx (the reference route), static NHWC input [1, 64, 96, 1] float32."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    input_shape = tuple(int(d) for d in keras_model.input_shape[1:])
    signature = [tf.TensorSpec((1, *input_shape), tf.float32, name="patch")]
    # tf2onnx reads `output_names` from the model; Keras 3 functional models do not always set it.
    if not hasattr(keras_model, "output_names") or not keras_model.output_names:
        keras_model.output_names = ["probabilities"]
    with contextlib.redirect_stdout(io.StringIO()):
        model_proto, _ = tf2onnx.convert.from_keras(keras_model, input_signature=signature, opset=opset)
    if model_proto.opset_import[0].version < opset:
        model_proto = onnx.version_converter.convert_version(model_proto, opset)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model_proto, str(path))
    return path


class _Reader:
    """onnxruntime CalibrationDataReader: one float32 patch per call, as the reference feeds them."""

    def __init__(self, input_name: str, calibration: np.ndarray) -> None:
        self.input_name, self.calibration, self.position = input_name, calibration, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.calibration):
            return None
        sample = self.calibration[self.position : self.position + 1]
        self.position += 1
        return {self.input_name: sample}

    def rewind(self) -> None:
        self.position = 0


def to_qdq_onnx(
    keras_model,
    calibration: np.ndarray,
    path: Path,
    opset: int = 17,
    per_channel: bool = True,
    moving_average: bool = True,
) -> QuantizationInfo:
    """Keras -> float ONNX -> pre-processing -> static QDQ int8 (MinMax, per-channel, symmetric weights).

    Model inputs and outputs stay float32; the QuantizeLinear right after the input carries the input scale."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_shape = tuple(int(d) for d in keras_model.input_shape[1:])
    calibration = _check_calibration(calibration, input_shape)
    path = Path(path)
    float_path = path.with_name(path.stem + "_float.onnx")
    prepared_path = path.with_name(path.stem + "_prep.onnx")
    to_onnx(keras_model, float_path, opset)
    quant_pre_process(str(float_path), str(prepared_path), skip_optimization=False, skip_symbolic_shape=True)
    input_name = onnx.load(str(prepared_path)).graph.input[0].name
    quantize_static(
        str(prepared_path),
        str(path),
        _Reader(input_name, calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        calibrate_method=CalibrationMethod.MinMax,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QInt8,
        op_types_to_quantize=QDQ_OP_TYPES,
        extra_options={
            "WeightSymmetric": True,
            "ActivationSymmetric": False,
            # The reference averages per-sample min / max (one sample per calibration batch), which narrows
            # activation ranges; False keeps the true extremes.
            "CalibMovingAverage": moving_average,
        },
    )
    prepared_path.unlink(missing_ok=True)
    scale, zero_point = _onnx_input_quantization(path, input_name)
    return QuantizationInfo(
        path=str(path),
        format="onnx_qdq",
        size_bytes=path.stat().st_size,
        n_calibration=len(calibration),
        calibration_sha256=calibration_sha256(calibration),
        input_scale=scale,
        input_zero_point=zero_point,
        input_dtype="float32",
        output_dtype="float32",
    )


def _onnx_input_quantization(path: Path, input_name: str) -> tuple[float | None, int | None]:
    """Scale and zero point of the first QuantizeLinear downstream of the model input (None if absent)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    initializers = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    frontier = {input_name}
    for _ in range(4):  # the input may pass a Transpose before its first QuantizeLinear
        for node in model.graph.node:
            if (
                node.op_type == "QuantizeLinear"
                and node.input[0] in frontier
                and node.input[1] in initializers
            ):
                zero = initializers.get(node.input[2]) if len(node.input) > 2 else None
                zero_point = int(np.asarray(zero).reshape(-1)[0]) if zero is not None else 0
                return float(np.asarray(initializers[node.input[1]]).reshape(-1)[0]), zero_point
        frontier |= {
            out
            for node in model.graph.node
            if node.input and node.input[0] in frontier
            for out in node.output
        }
    return None, None
