"""Step `quantize`: every split's Keras model -> int8 (YAMNet-256: full-integer TFLite; YAMNet-1024: ONNX QDQ).

Calibration uses a seeded sample of that split's TRAINING patches (never its test clips), as splits.json lists.
Reads models/<model>/float (train's output); writes models/<model>/int8/<split>/model_int8.tflite | model_qdq.onnx
and int8/quantize.json (record: format, size, calibration sha256, input scale / zero point per split).
The deployable model is int8/final/ (trained on every clip).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aed.artifacts import FLOAT_MODEL_FILE, INT8_MODEL_FILE, QUANTIZE_RECORD_FILE, SPLITS_FILE
from aed.models.runners import load_keras
from aed.outputs import OutputSpec, replacing
from aed.params import load_section
from aed.quantize import QuantizationError, QuantizeParams, to_int8_tflite, to_qdq_onnx
from aed.records import write_record
from components.common import add_model_name_option, add_params_option

# pandas comes with the patch store: imported where used, so that `aed --help` stays fast.
if TYPE_CHECKING:
    from aed.patchstore import PatchStore

log = logging.getLogger(__name__)


def calibration_patches(store, clip_ids: list[str], size: int, seed: int) -> np.ndarray:
    """A seeded sample of the given clips' patches (in index order, so the sample is reproducible)."""
    rows = store.index[store.index["clip_id"].isin(set(clip_ids))]
    if size <= 0 or rows.empty:
        raise QuantizationError(
            f"calibration set is empty (calibration_size {size}, {len(rows)} training patches)"
        )
    chosen = np.sort(np.random.default_rng(seed).choice(len(rows), size=min(size, len(rows)), replace=False))
    return store.patches(rows.iloc[chosen])


def run(params: QuantizeParams, model_name: str, patches_dir: Path, model_dir: Path, out_dir: Path) -> dict:
    from aed.patchstore import load_patch_store

    fmt = params.format_for(model_name)
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    splits_path = model_dir / SPLITS_FILE
    if not splits_path.is_file():
        raise FileNotFoundError(f"{splits_path}: missing; run `aed train --model-name {model_name}` first")
    try:
        splits = json.loads(splits_path.read_text())["splits"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{splits_path}: not the splits.json `aed train` writes ({error})") from None
    store = load_patch_store(patches_dir)
    # The int8 folder is written aside and swapped in whole, only over an earlier quantize output.
    sources = {"float models": model_dir, "patch store": Path(patches_dir)}
    with replacing(out_dir, OutputSpec("quantize"), sources, dataclasses.asdict(params)) as staging:
        metrics = _quantize_into(staging, store, model_dir, splits_path, splits, params, model_name, fmt)
    for name, info in metrics[
        "splits"
    ].items():  # where the file is once swapped in, not where it was written
        info["path"] = str(out_dir / name / INT8_MODEL_FILE[fmt])
    return metrics


def _quantize_into(
    out_dir: Path,
    store: PatchStore,
    model_dir: Path,
    splits_path: Path,
    splits: dict,
    params: QuantizeParams,
    model_name: str,
    fmt: str,
) -> dict:
    per_split = {}
    started = time.perf_counter()
    for name, split in splits.items():
        model = load_keras(model_dir / name / FLOAT_MODEL_FILE)
        calibration = calibration_patches(store, split["train"], params.calibration_size, params.seed)
        target = out_dir / name / INT8_MODEL_FILE[fmt]
        if fmt == "tflite":
            info = to_int8_tflite(model, calibration, target, params.output_type, params.per_channel)
        else:
            info = to_qdq_onnx(
                model, calibration, target, params.opset, params.per_channel, params.calib_moving_average
            )
        per_split[name] = info.to_dict()
        log.info("quantize %s %s: %s", model_name, name, per_split[name])
    metrics = {
        "model": model_name,
        "format": fmt,
        "splits": per_split,
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_record(out_dir / QUANTIZE_RECORD_FILE, "quantize", metrics, inputs={"splits": splits_path})
    return metrics


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("quantize", help="int8 post-training quantization of a trained model")
    add_params_option(parser)
    add_model_name_option(parser, help="the trained model to quantize: yamnet_256 | yamnet_1024")
    parser.add_argument("--patches", type=Path, default=Path("artifacts/patches"))
    parser.add_argument(
        "--model-dir", type=Path, default=None, help="float models; default: models/<model>/float"
    )
    parser.add_argument("--out", type=Path, default=None, help="default: models/<model>/int8")
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    params = load_section(args.params, "quantize", QuantizeParams)
    model = args.model_name
    root = Path("models") / model
    metrics = run(params, model, args.patches, args.model_dir or root / "float", args.out or root / "int8")
    sizes = {name: info["size_bytes"] for name, info in metrics["splits"].items()}
    print(f"quantize {model} ({metrics['format']}): {metrics['seconds']} s; bytes per split: {sizes}")
    return 0
