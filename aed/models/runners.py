"""Run saved models on patches: Keras (float), LiteRT (int8 .tflite) and onnxruntime (QDQ .onnx).

Quantized models always run in their own runtime, never through the float model. LiteRT uses the reference
(BUILTIN_REF) kernels by default: bit-exact with TFLite Micro, so host figures match the board's arithmetic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class ModelFileError(ValueError):
    pass


def _require(path: Path) -> Path:
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise ModelFileError(f"{path}: model file missing or empty")
    return path


def load_keras(path: Path):
    import keras

    path = _require(path)
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # keras raises many types for a bad archive
        raise ModelFileError(
            f"{path}: not a loadable Keras model ({type(error).__name__}: {error})"
        ) from error


def predict_keras(model_or_path, patches: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Inference-mode forward pass. Up to 4 batches run as eager calls: a freshly loaded or just-trained model
    would otherwise trace a new predict function for every small set (TensorFlow then warns of retracing)."""
    model = load_keras(model_or_path) if isinstance(model_or_path, str | Path) else model_or_path
    x = np.asarray(patches, np.float32)
    if len(x) == 0:
        return np.zeros((0, *model.output_shape[1:]), np.float32)
    if len(x) <= 4 * batch_size:
        return np.concatenate(
            [np.asarray(model(x[i : i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
        )
    return model.predict(x, batch_size=batch_size, verbose=0)


def predict_tflite(path: Path, patches: np.ndarray, reference_kernels: bool = True) -> np.ndarray:
    """One patch at a time through LiteRT; int8 inputs are quantized with the model's own scale / zero point,
    int8 outputs are dequantized."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = _require(path)
    resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
    try:
        interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        raise ModelFileError(f"{path}: not a valid TFLite model ({error})") from error
    detail_in, detail_out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    in_scale, in_zero = detail_in["quantization"]
    out_scale, out_zero = detail_out["quantization"]
    outputs = np.empty((len(patches), int(np.prod(detail_out["shape"][1:]))), np.float32)
    for i, patch in enumerate(np.asarray(patches, np.float32)):
        x = patch[None]
        if detail_in["dtype"] == np.int8:
            x = np.clip(np.round(x / in_scale + in_zero), -128, 127).astype(np.int8)
        interpreter.set_tensor(detail_in["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(detail_out["index"]).reshape(-1)
        outputs[i] = (y.astype(np.float32) - out_zero) * out_scale if detail_out["dtype"] == np.int8 else y
    return outputs


def onnx_session(path: Path, threads: int = 2) -> Any:
    """An onnxruntime CPU session of `path` (`threads` intra-op threads, one inter-op); ModelFileError names a
    missing or unreadable file."""
    import onnxruntime as ort

    path = _require(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for a bad file
        raise ModelFileError(f"{path}: not a valid ONNX model ({type(error).__name__}: {error})") from error


def predict_onnx(path: Path, patches: np.ndarray, threads: int = 2) -> np.ndarray:
    """One patch at a time through onnxruntime (CPU), as the reference evaluates the QDQ model."""
    session = onnx_session(path, threads)
    name = session.get_inputs()[0].name
    outputs = [
        session.run(None, {name: patch[None]})[0].reshape(-1) for patch in np.asarray(patches, np.float32)
    ]
    return np.stack(outputs) if outputs else np.zeros((0, session.get_outputs()[0].shape[-1]), np.float32)


def predict_file(path: Path, patches: np.ndarray) -> np.ndarray:
    """Dispatch on the file suffix: .keras, .tflite or .onnx."""
    suffix = Path(path).suffix
    if suffix == ".tflite":
        return predict_tflite(path, patches)
    if suffix == ".onnx":
        return predict_onnx(path, patches)
    if suffix in (".keras", ".h5"):
        return predict_keras(path, patches)
    raise ModelFileError(f"{path}: unknown model format {suffix!r} (expected .keras, .tflite or .onnx)")
