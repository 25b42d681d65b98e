"""Firmware tables and golden vectors for the STM32 AED application (the reference application's tables).

Writes, from the reference front end in aed.features (never a second mel implementation):
- `ai_model_config.h`: feature settings, the model's input scale / zero point, class names;
- `user_mel_tables.c/.h`: the periodic Hann window and the non-zero mel weights with start / stop FFT bins;
- golden vectors (`golden/*.npy` and `golden_vectors.h`): one firmware patch of audio (int16), its log-mel patch,
  the int8 model input and the model output, so the firmware can test its own front end and network.

The firmware computes `logf(max(mel, FLT_MIN))` without the Python recipe's +1e-4; the golden patch follows the
Python recipe (the one the model was trained with), so on near-silent bins the firmware may differ from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aed.detection.postprocess import PostProcessParams
from aed.features import FeatureConfig, hann_window, log_mel, sparse_mel
from aed.params import bounded
from aed.records import atomic_write_text

SILENCE_THRESHOLD = 100.0  # sum of magnitude bins over a patch (firmware silence gate, to_db False)


@dataclass(frozen=True)
class ExportFirmwareParams:
    """The `export_firmware` section; the front end itself is the `patch` section (aed.patching.PatchParams)."""

    ood_threshold: float = bounded(0.0, 0.0, 1.0)  # max softmax at or below this -> "unknown" (OOD_THR)
    golden_seed: int = bounded(0, 0)  # seed of the synthetic golden clip (when no clip is given)


class FirmwareExportError(ValueError):
    pass


@dataclass(frozen=True)
class MelTables:
    window: np.ndarray  # float32 (win_length,)
    lut: np.ndarray  # float32, the non-zero weights row by row
    start: np.ndarray  # int32 (n_mels,), first non-zero FFT bin of each row
    stop: np.ndarray  # int32 (n_mels,), last non-zero FFT bin (inclusive)


def check_config(config: FeatureConfig) -> None:
    """The reference generator's checks (section 12.1)."""
    if config.sample_rate not in (16000, 48000):
        raise FirmwareExportError(
            f"sample_rate {config.sample_rate}: the firmware supports 16000 or 48000 Hz"
        )
    if config.n_fft & (config.n_fft - 1):
        raise FirmwareExportError(f"n_fft {config.n_fft} is not a power of two")
    if config.win_length > config.n_fft:
        raise FirmwareExportError(f"win_length {config.win_length} is longer than n_fft {config.n_fft}")


def mel_tables(config: FeatureConfig = FeatureConfig()) -> MelTables:
    check_config(config)
    try:
        table = sparse_mel(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax)
    except ValueError as error:  # the firmware needs every band non-empty and contiguous
        raise FirmwareExportError(str(error)) from error
    return MelTables(
        window=hann_window(config.win_length).astype(np.float32),
        lut=table.weights.astype(np.float32),
        start=table.start.astype(np.int32),
        stop=table.stop.astype(np.int32),
    )


def patch_samples(config: FeatureConfig = FeatureConfig()) -> int:
    """Samples of one firmware patch: (frames - 1) * hop + n_fft (15 712 with the defaults)."""
    return (config.patch_frames - 1) * config.hop_length + config.n_fft


def golden_audio(config: FeatureConfig = FeatureConfig(), seed: int = 0) -> np.ndarray:
    """A deterministic int16 test clip of one patch: two tones, a chirp and noise."""
    t = np.arange(patch_samples(config)) / config.sample_rate
    signal = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.2 * np.sin(2 * np.pi * 1800.0 * t)
    signal += 0.15 * np.sin(2 * np.pi * (200.0 + 3000.0 * t) * t)
    signal += 0.05 * np.random.default_rng(seed).standard_normal(t.size)
    return np.clip(np.round(signal * 32767), -32768, 32767).astype(np.int16)


def golden_patch(audio_int16: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """The Python recipe on the firmware's input: int16 / 32768, no silence removal, first 96 frames (64, 96)."""
    spectrogram = log_mel(audio_int16.astype(np.float64) / 32768.0, config)
    if spectrogram.shape[1] < config.patch_frames:
        raise FirmwareExportError(
            f"golden clip gives {spectrogram.shape[1]} frames, fewer than a patch ({config.patch_frames})"
        )
    return spectrogram[:, : config.patch_frames].astype(np.float32)


def _c_floats(values: np.ndarray, per_line: int = 4) -> str:
    items = [f"{float(v):.10e}f" for v in np.asarray(values, dtype=np.float32).ravel()]
    return ",\n".join("  " + ", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line))


def _c_ints(values: np.ndarray, per_line: int = 16) -> str:
    items = [str(int(v)) for v in np.asarray(values).ravel()]
    return ",\n".join("  " + ", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line))


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class PostProcessConstants:
    """What a board needs to turn its window scores into the events host detect finds (aed.detection.postprocess):
    the operating point, the window hop and length, and which classes are background (never an event)."""

    point: PostProcessParams
    hop_s: float
    window_s: float
    background: tuple[bool, ...]  # per class, in the model's output order


def postprocess_defines(constants: PostProcessConstants) -> str:
    """The post-processing block of ai_model_config.h. Floats are written with 9 significant digits, enough to
    give back the exact float32 (and what the host compares against, to 1e-9)."""
    flags = ", ".join("1" if flag else "0" for flag in constants.background)
    point = constants.point
    return f"""/* Post-processing of the window scores, as host `aed detect` applies it (aed.detection.postprocess):
   a causal moving average over SMOOTHING_WINDOWS windows per class; an event starts at the first window whose
   smoothed score is >= ON_THRESHOLD and ends before the first one < OFF_THRESHOLD; it spans its first window's
   start to its last window's start + WINDOW_S; events of one class MERGE_GAP_S apart or closer are merged; events
   shorter than MIN_DURATION_S are dropped; background classes never make events. Windows start every HOP_S. */
#define CTRL_X_CUBE_AI_PP_SMOOTHING_WINDOWS ({point.smoothing_windows})
#define CTRL_X_CUBE_AI_PP_ON_THRESHOLD   ({point.on_threshold:.9g}F)
#define CTRL_X_CUBE_AI_PP_OFF_THRESHOLD  ({point.off_threshold:.9g}F)
#define CTRL_X_CUBE_AI_PP_MIN_DURATION_S ({point.min_duration_s:.9g}F)
#define CTRL_X_CUBE_AI_PP_MERGE_GAP_S    ({point.merge_gap_s:.9g}F)
#define CTRL_X_CUBE_AI_PP_HOP_S          ({constants.hop_s:.9g}F)
#define CTRL_X_CUBE_AI_PP_WINDOW_S       ({constants.window_s:.9g}F)
#define CTRL_X_CUBE_AI_PP_BACKGROUND     {{{flags}}}
"""


def config_header(
    config: FeatureConfig,
    class_names: list[str],
    input_scale: float,
    input_zero_point: int,
    ood_threshold: float,
    postprocess: PostProcessConstants | None = None,
) -> str:
    classes = ", ".join(_c_string(name) for name in class_names)
    if postprocess is not None and len(postprocess.background) != len(class_names):
        raise FirmwareExportError(
            f"post-processing: {len(postprocess.background)} background flags for {len(class_names)} classes"
        )
    post = postprocess_defines(postprocess) if postprocess is not None else ""
    return f"""/* Generated by aed export-firmware. Feature settings of the reference log-mel front end. */
#ifndef AI_MODEL_CONFIG_H
#define AI_MODEL_CONFIG_H

#define CTRL_X_CUBE_AI_MODEL_NAME        "X-CUBE-AI AED"
#define CTRL_X_CUBE_AI_MODEL_OUTPUT_1    CTRL_AI_CLASS_DISTRIBUTION
#define CTRL_X_CUBE_AI_MODE_CLASS_NUMBER {len(class_names)}
#define CTRL_X_CUBE_AI_MODE_CLASS_LIST   {{{classes}}}
#define CTRL_X_CUBE_AI_SENSOR_ODR        ({config.sample_rate}.0F)
#define CTRL_X_CUBE_AI_PREPROC           (CTRL_AI_SPECTROGRAM_LOG_MEL)
#define CTRL_X_CUBE_AI_SPECTROGRAM_NMEL  ({config.n_mels})
#define CTRL_X_CUBE_AI_SPECTROGRAM_COL   ({config.patch_frames})
#define CTRL_X_CUBE_AI_SPECTROGRAM_HOP_LENGTH ({config.hop_length})
#define CTRL_X_CUBE_AI_SPECTROGRAM_NFFT  ({config.n_fft})
#define CTRL_X_CUBE_AI_SPECTROGRAM_WINDOW_LENGTH ({config.win_length})
#define CTRL_X_CUBE_AI_SPECTROGRAM_NORMALIZE (0)   /* mel filters without area normalisation */
#define CTRL_X_CUBE_AI_SPECTROGRAM_FORMULA (MEL_HTK)
#define CTRL_X_CUBE_AI_SPECTROGRAM_FMIN  ({config.fmin:g}F)
#define CTRL_X_CUBE_AI_SPECTROGRAM_FMAX  ({config.fmax:g}F)
#define CTRL_X_CUBE_AI_SPECTROGRAM_TYPE  (SPECTRUM_TYPE_MAGNITUDE)
#define CTRL_X_CUBE_AI_SPECTROGRAM_LOG_FORMULA (LOGMELSPECTROGRAM_SCALE_LOG)
#define CTRL_X_CUBE_AI_SPECTROGRAM_SILENCE_THR ({SILENCE_THRESHOLD:.1f}F)
#define CTRL_X_CUBE_AI_SPECTROGRAM_WIN   (user_win)
#define CTRL_X_CUBE_AI_SPECTROGRAM_MEL_LUT (user_melFiltersLut)
#define CTRL_X_CUBE_AI_SPECTROGRAM_MEL_START_IDX (user_melFiltersStartIndices)
#define CTRL_X_CUBE_AI_SPECTROGRAM_MEL_STOP_IDX (user_melFiltersStopIndices)
#define CTRL_X_CUBE_AI_OOD_THR           ({ood_threshold:g}F)
/* Model input quantization: q = clip(round(x / scale) + zero_point, -128, 127). */
#define CTRL_X_CUBE_AI_INPUT_SCALE       ({input_scale:.10e}F)
#define CTRL_X_CUBE_AI_INPUT_ZERO_POINT  ({input_zero_point})
/* The Python recipe takes ln(mel + {config.log_offset:g}); the firmware takes logf(mel) (values <= 0 -> FLT_MIN). */
{post}
#endif /* AI_MODEL_CONFIG_H */
"""


def tables_header(tables: MelTables) -> str:
    return f"""/* Generated by aed export-firmware. */
#ifndef USER_MEL_TABLES_H
#define USER_MEL_TABLES_H
#include <stdint.h>

extern const float user_win[{tables.window.size}];
extern const float user_melFiltersLut[{tables.lut.size}];
extern const uint32_t user_melFiltersStartIndices[{tables.start.size}];
extern const uint32_t user_melFiltersStopIndices[{tables.stop.size}];

#endif /* USER_MEL_TABLES_H */
"""


def tables_source(tables: MelTables) -> str:
    return f"""/* Generated by aed export-firmware: periodic Hann window and the non-zero HTK mel weights (norm None). */
#include "user_mel_tables.h"

const float user_win[{tables.window.size}] = {{
{_c_floats(tables.window)}
}};

const float user_melFiltersLut[{tables.lut.size}] = {{
{_c_floats(tables.lut)}
}};

const uint32_t user_melFiltersStartIndices[{tables.start.size}] = {{
{_c_ints(tables.start)}
}};

const uint32_t user_melFiltersStopIndices[{tables.stop.size}] = {{
{_c_ints(tables.stop)}
}};
"""


def golden_header(audio: np.ndarray, patch: np.ndarray, model_input: np.ndarray, output: np.ndarray) -> str:
    return f"""/* Generated by aed export-firmware: golden vectors (Python recipe, ln(mel + 1e-4)). */
#ifndef GOLDEN_VECTORS_H
#define GOLDEN_VECTORS_H
#include <stdint.h>

/* one firmware patch of audio; the front end reads sample / 32768.0f */
static const int16_t golden_audio[{audio.size}] = {{
{_c_ints(audio)}
}};

/* expected log-mel patch, [n_mels][frames] */
static const float golden_logmel[{patch.shape[0]}][{patch.shape[1]}] = {{
{_c_floats(patch)}
}};

/* expected int8 model input, (n_mels, frames) layout */
static const int8_t golden_input[{model_input.size}] = {{
{_c_ints(model_input)}
}};

/* expected model output */
static const float golden_output[{output.size}] = {{
{_c_floats(output)}
}};

#endif /* GOLDEN_VECTORS_H */
"""


def write_text(path: Path, text: str) -> Path:
    atomic_write_text(path, text)
    return path


def input_quantization(model_path: Path) -> tuple[float, int]:
    """The model input's int8 scale and zero point (.tflite input tensor, or the QDQ model's first Q node)."""
    model_path = Path(model_path)
    if model_path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        detail = Interpreter(model_path=str(model_path)).get_input_details()[0]
        scale, zero_point = detail["quantization"]
        if not scale:
            raise FirmwareExportError(f"{model_path}: the model input is not quantized (float input)")
        return float(scale), int(zero_point)
    if model_path.suffix == ".onnx":
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(model_path))
        inits = {init.name: init for init in model.graph.initializer}
        reachable = {i.name for i in model.graph.input}
        for node in model.graph.node:  # follow layout-only nodes from the input to its QuantizeLinear
            if node.input and node.input[0] in reachable:
                if node.op_type == "QuantizeLinear":
                    scale = float(numpy_helper.to_array(inits[node.input[1]]))
                    zero_point = (
                        int(numpy_helper.to_array(inits[node.input[2]])) if len(node.input) > 2 else 0
                    )
                    return scale, zero_point
                if node.op_type in ("Transpose", "Reshape", "Identity"):
                    reachable.update(node.output)
        raise FirmwareExportError(f"{model_path}: no QuantizeLinear on the model input (not a QDQ model?)")
    raise FirmwareExportError(f"{model_path}: unsupported model type (expected .tflite or .onnx)")


def run_model(
    model_path: Path, patch: np.ndarray, scale: float, zero_point: int
) -> tuple[np.ndarray, np.ndarray]:
    """(int8 input, output) of the model on one (n_mels, frames) patch, quantized as the firmware does."""
    from aed.quantize import quantize_input

    model_path = Path(model_path)
    float_input = patch[None, :, :, None].astype(np.float32)
    int8_input = quantize_input(float_input, scale, zero_point)
    if model_path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(model_path))
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], int8_input.astype(detail["dtype"]))
        interpreter.invoke()
        output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        output = session.run(None, {session.get_inputs()[0].name: float_input})[0]
    return int8_input.reshape(patch.shape), np.asarray(output).ravel()
