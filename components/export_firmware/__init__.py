"""Step `export-firmware`: C config header, Hann / mel tables and golden vectors for the STM32 AED firmware.

The header also carries the post-processing constants (smoothing, thresholds, minimum duration, merge gap, window
hop and length, background classes), so that a board turns its window scores into the events host `aed detect`
finds: from the model's calibrated operating point (`--operating-point`, `aed calibrate`'s postprocess.json) when
there is one, else from params.yaml's `detect:` section.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from aed import firmware
from aed.detection.detect import DetectParams
from aed.features import FeatureConfig
from aed.firmware import ExportFirmwareParams
from aed.outputs import OutputSpec, check_output, replacing
from aed.params import load_section
from aed.patching import PatchParams, class_order
from aed.records import sha256_file, write_record
from components.common import add_params_option


def run(
    params: ExportFirmwareParams,
    config: FeatureConfig,
    class_names: list[str],
    model: Path,
    out_dir: Path,
    record_path: Path | None,
    clip: Path | None = None,
    detect: DetectParams | None = None,
    operating_point: Path | None = None,
) -> dict:
    model, out_dir = Path(model), Path(out_dir)
    check_output(out_dir, OutputSpec("export_firmware"), {"model": model, "golden clip": clip})
    if not model.is_file():
        raise FileNotFoundError(f"{model}: model file not found")
    class_names = class_order((), class_names)  # the order the patch store and the model have
    if not class_names:
        raise ValueError("export-firmware: no class names (validate.classes in params.yaml)")
    tables = firmware.mel_tables(config)
    try:
        scale, zero_point = firmware.input_quantization(model)
    except ValueError as error:  # LiteRT / onnx say what is wrong, not which file
        raise firmware.FirmwareExportError(f"{model}: not a readable model ({error})") from None
    audio = _clip_int16(clip, config) if clip else firmware.golden_audio(config, params.golden_seed)
    patch = firmware.golden_patch(audio, config)
    model_input, output = firmware.run_model(model, patch, scale, zero_point)
    if output.size != len(class_names):
        raise ValueError(
            f"{model}: the model has {output.size} outputs but {len(class_names)} class names are set"
        )
    constants, point_source = _postprocess_constants(
        config, class_names, detect or DetectParams(), operating_point
    )
    header = firmware.config_header(config, class_names, scale, zero_point, params.ood_threshold, constants)
    # The firmware folder is written aside and swapped in whole, only over an earlier export-firmware output.
    with replacing(out_dir, OutputSpec("export_firmware"), {"model": model, "golden clip": clip}) as staging:
        arrays = {"audio_int16": audio, "logmel_patch": patch, "input_int8": model_input, "output": output}
        written = _write_files(staging, tables, header, arrays)
        files = {str(path.relative_to(staging)): sha256_file(path) for path in written}
    figures = {
        "input_scale": scale,
        "input_zero_point": zero_point,
        "mel_lut_values": int(tables.lut.size),
        "mel_bins": [int(tables.start.min()), int(tables.stop.max())],
        "classes": class_names,
        "golden_clip": str(clip) if clip else f"synthetic(seed={params.golden_seed})",
        "golden_top_class": class_names[int(np.argmax(output))],
        "log_note": "golden log-mel uses ln(mel + 1e-4) (Python recipe); the firmware uses logf(mel)",
        "postprocess": {
            **dataclasses.asdict(constants.point),
            "hop_s": constants.hop_s,
            "window_s": constants.window_s,
            "from": point_source,
        },
        "files": files,
    }
    if record_path is not None:
        write_record(record_path, "export_firmware", figures, inputs={"model": model})
    return figures


def _postprocess_constants(
    config: FeatureConfig, class_names: list[str], detect: DetectParams, operating_point: Path | None
) -> tuple[firmware.PostProcessConstants, str]:
    """The header's post-processing constants and where the operating point came from."""
    from aed.detection.postprocess import load_operating_point
    from aed.detection.stream import hop_frames, window_seconds
    from aed.labels import background_classes

    point, source = detect.postprocess(), "params.yaml detect: (not calibrated)"
    if operating_point is not None:  # given: it must be there (a missing calibration is no silent fallback)
        point, source = load_operating_point(Path(operating_point)), str(operating_point)
    hop_frames(config, detect.hop_s)  # refuses a hop the board's frame grid cannot follow
    background = set(background_classes(class_names))
    flags = tuple(name in background for name in class_names)
    constants = firmware.PostProcessConstants(point, detect.hop_s, window_seconds(config), flags)
    return constants, source


def _write_files(
    out_dir: Path, tables: firmware.MelTables, header: str, arrays: dict[str, np.ndarray]
) -> list[Path]:
    golden = out_dir / "golden"
    golden.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(golden / f"{name}.npy", array)
    audio, patch, model_input, output = (
        arrays[k] for k in ("audio_int16", "logmel_patch", "input_int8", "output")
    )
    return [
        firmware.write_text(out_dir / "ai_model_config.h", header),
        firmware.write_text(out_dir / "user_mel_tables.h", firmware.tables_header(tables)),
        firmware.write_text(out_dir / "user_mel_tables.c", firmware.tables_source(tables)),
        firmware.write_text(
            out_dir / "golden_vectors.h", firmware.golden_header(audio, patch, model_input, output)
        ),
        *(golden / f"{name}.npy" for name in arrays),
    ]


def _clip_int16(path: Path, config: FeatureConfig) -> np.ndarray:
    from aed.audio import load_audio

    signal = load_audio(path, config.sample_rate)[: firmware.patch_samples(config)]
    if signal.size < firmware.patch_samples(config):
        raise ValueError(
            f"{path}: shorter than one firmware patch ({firmware.patch_samples(config)} samples)"
        )
    return np.clip(np.round(signal * 32768.0), -32768, 32767).astype(np.int16)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export-firmware", help="C tables, config header and golden vectors")
    add_params_option(parser)
    parser.add_argument("--model", type=Path, required=True, help="int8 .tflite or QDQ .onnx model")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--clip", type=Path, default=None, help="audio clip for the golden vectors")
    parser.add_argument("--record", type=Path, default=None, help="JSON record of the export")
    parser.add_argument("--operating-point", type=Path, default=None,
                        help="calibrated post-processing (postprocess.json); default: params.yaml detect:")  # fmt: skip
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    from aed.validation.validate import ValidateParams  # pandas: not for `aed --help`

    params = load_section(args.params, "export_firmware", ExportFirmwareParams)
    config = load_section(args.params, "patch", PatchParams).feature_config()
    classes = load_section(args.params, "validate", ValidateParams).classes
    detect = load_section(args.params, "detect", DetectParams)
    figures = run(
        params, config, classes, args.model, args.out, args.record, args.clip, detect, args.operating_point
    )
    print(f"export-firmware: {len(figures['files'])} files in {args.out}, input scale {figures['input_scale']:.8f} "
          f"zero point {figures['input_zero_point']}")  # fmt: skip
    return 0
