"""Step `evaluate`: test-fold clip / patch accuracy of every model, float (Keras) and int8 (LiteRT reference
kernels for .tflite, onnxruntime for QDQ .onnx), plus float-vs-int8 agreement, per-class report and confusion.

Outputs:
    reports/metrics.json                        DVC metrics: per model and format, clip_accuracy (per split and
                                                mean), patch_accuracy, n_clips, split; int8 agreement
    reports/<model>/evaluation.json             per-class precision / recall / F1, confusion matrices
    reports/<model>/confusion_<format>.json     DVC confusion plot rows (all test folds together)
    reports/<model>/confusion_<format>.png
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aed.artifacts import INT8_MODEL_FILE
from aed.evaluation import agreement, confusion_rows, per_class_report, save_confusion_png, score
from aed.models.config import ModelsParams
from aed.models.runners import load_keras, predict_keras, predict_onnx, predict_tflite
from aed.outputs import publishing
from aed.params import load_section
from aed.patchstore import load_patch_store
from aed.records import write_json, write_record
from components.common import add_params_option

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluateParams:
    reference_kernels: bool = True  # LiteRT BUILTIN_REF: bit-exact with TFLite Micro (slower than XNNPACK)
    int8: bool = True  # also evaluate the quantized models


def _int8_file(split_dir: Path) -> tuple[str, Path] | None:
    for fmt, name in INT8_MODEL_FILE.items():
        if (split_dir / name).is_file():
            return fmt, split_dir / name
    return None


def evaluate_model(
    store, model_dir: Path, model_name: str, params: EvaluateParams, reports_dir: Path
) -> dict:
    """model_dir = models/<model>, holding float/ (train's output) and int8/ (quantize's)."""
    float_dir, int8_dir = Path(model_dir) / "float", Path(model_dir) / "int8"
    splits_file = float_dir / "splits.json"
    if not splits_file.is_file():
        raise FileNotFoundError(f"{splits_file}: missing; run `aed train --model {model_name}` first")
    layout = json.loads(splits_file.read_text())
    names = store.class_names
    tested = {name: s for name, s in layout["splits"].items() if s["test"]}
    if not tested:
        raise ValueError(f"{splits_file}: no split has test clips")
    formats: dict[str, dict] = {}
    agreements: dict[str, dict] = {}
    for split_name, split in tested.items():
        rows = store.index[store.index["clip_id"].isin(set(split["test"]))]
        patches, labels, clips = store.patches(rows), store.labels(rows), rows["clip_id"].to_numpy()
        float_probs = predict_keras(load_keras(float_dir / split_name / "model.keras"), patches)
        outputs = {"float32": float_probs}
        found = _int8_file(int8_dir / split_name) if params.int8 else None
        if params.int8 and found is None:
            raise FileNotFoundError(f"{int8_dir / split_name}: no quantized model; run `aed quantize` first")
        if found:
            fmt, path = found
            if fmt == "tflite":
                outputs[fmt] = predict_tflite(path, patches, params.reference_kernels)
            else:
                outputs[fmt] = predict_onnx(path, patches)
            agreements[split_name] = agreement(float_probs, outputs[fmt])
        for fmt, probs in outputs.items():
            result = score(probs, clips, labels, len(names))
            formats.setdefault(fmt, {})[split_name] = result
    metrics: dict[str, dict] = {}
    details: dict[str, dict] = {}
    for fmt, by_split in formats.items():
        total = sum(r["confusion"] for r in by_split.values())
        metrics[fmt] = {
            "clip_accuracy": {
                **{s: r["clip_accuracy"] for s, r in by_split.items()},
                "mean": float(np.mean([r["clip_accuracy"] for r in by_split.values()])),
            },
            "patch_accuracy": {
                **{s: r["patch_accuracy"] for s, r in by_split.items()},
                "mean": float(np.mean([r["patch_accuracy"] for r in by_split.values()])),
            },
            "n_clips": int(sum(r["n_clips"] for r in by_split.values())),
            "n_patches": int(sum(r["n_patches"] for r in by_split.values())),
            "split": layout["split"],
        }
        details[fmt] = {"per_class": per_class_report(total, names), "confusion": total.tolist()}
        write_json(reports_dir / f"confusion_{fmt}.json", confusion_rows(total, names))
        save_confusion_png(
            total, names, reports_dir / f"confusion_{fmt}.png", f"{model_name} {fmt} (all test folds)"
        )
    if agreements:
        metrics["int8_vs_float"] = {
            "top1_agreement": float(np.mean([a["top1_agreement"] for a in agreements.values()])),
            "mean_cosine": float(np.mean([a["mean_cosine"] for a in agreements.values()])),
            "per_split": agreements,
        }
    write_json(
        reports_dir / "evaluation.json", {"model": model_name, "class_names": names, "formats": details}
    )
    return metrics


def run(
    patches_dir: Path,
    models_root: Path,
    reports_root: Path,
    params: EvaluateParams,
    model_names: list[str],
    metrics_path: Path | None = None,
) -> dict:
    store = load_patch_store(patches_dir)
    started = time.perf_counter()
    metrics = {}
    for model_name in model_names:
        # reports/<model> is shared with train's histories: the files are written aside and moved in together.
        with publishing(Path(reports_root) / model_name) as staged:
            metrics[model_name] = evaluate_model(
                store, Path(models_root) / model_name, model_name, params, staged
            )
        log.info(
            "evaluate %s: %s",
            model_name,
            {f: m.get("clip_accuracy", {}).get("mean") for f, m in metrics[model_name].items()},
        )
    metrics_path = Path(metrics_path or Path(reports_root) / "metrics.json")
    write_json(metrics_path, metrics)
    inputs = {f"{m}_splits": Path(models_root) / m / "float" / "splits.json" for m in model_names}
    write_record(
        Path(reports_root) / "evaluate.json",
        "evaluate",
        {"seconds": round(time.perf_counter() - started, 2), "metrics": metrics},
        inputs,
    )
    return metrics


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="clip-level evaluation of float and int8 models")
    add_params_option(parser)
    parser.add_argument("--model", action="append", default=None, help="repeatable; default: models.names")
    parser.add_argument("--patches", type=Path, default=Path("artifacts/patches"))
    parser.add_argument("--models-root", type=Path, default=Path("models"))
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    parser.add_argument("--metrics", type=Path, default=Path("reports/metrics.json"))
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    params = load_section(args.params, "evaluate", EvaluateParams)
    models = load_section(args.params, "models", ModelsParams)
    models.validate()
    metrics = run(
        args.patches, args.models_root, args.reports, params, args.model or models.names, args.metrics
    )
    for model, by_format in metrics.items():
        means = {
            fmt: round(m["clip_accuracy"]["mean"], 4) for fmt, m in by_format.items() if "clip_accuracy" in m
        }
        print(f"evaluate {model}: mean clip accuracy {means}")
    return 0
