"""Step `train`: patch store -> one Keras model per split (5-fold CV) + the deployable model, histories, record.

Outputs (out_dir = models/<model>/float):
    <split>/model.keras      split = fold-1 ... fold-5 (or random / predefined), and final (all clips)
    splits.json              the clips of every split's train / validation / test parts (quantize and
                             evaluate read it, so calibration and testing use exactly these clips)
    train.json               record: params, best epoch and validation accuracy per split, timings
reports_dir/history/<split>.csv   per-epoch history (DVC plots)
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

import pandas as pd

from aed.models.config import ModelsParams
from aed.params import load_section
from aed.patchstore import load_patch_store
from aed.records import write_json, write_record
from aed.splits import full_training_split, make_splits
from aed.training import ModelSource, TrainParams, train_split
from components.common import add_params_option

log = logging.getLogger(__name__)


def run(
    patches_dir: Path,
    out_dir: Path,
    params: TrainParams,
    model_name: str,
    reports_dir: Path | None = None,
    models: ModelsParams | None = None,
) -> dict:
    models = models or ModelsParams()
    models.validate()
    params = params.for_model(model_name)
    params.validate()
    store = load_patch_store(patches_dir)
    splits = make_splits(
        store.index,
        store.class_names,
        params.split,
        params.folds,
        params.validation_fraction,
        params.random_test_size,
        params.seed,
    )
    if params.final_model:
        splits.append(
            full_training_split(store.index, store.class_names, params.validation_fraction, params.seed)
        )
    out_dir, reports_dir = Path(out_dir), Path(reports_dir or Path("reports") / model_name)
    yamnet_h5, yamnet_h5_sha256 = models.h5_for(model_name)
    source = ModelSource(True, yamnet_h5, yamnet_h5_sha256)
    per_split: dict[str, dict] = {}
    started = time.perf_counter()
    for split in splits:
        split_started = time.perf_counter()
        result = train_split(store, split, model_name, params, source)
        (out_dir / split.name).mkdir(parents=True, exist_ok=True)
        result.model.save(out_dir / split.name / "model.keras")
        history_path = reports_dir / "history" / f"{split.name}.csv"
        history_path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(result.history).to_csv(history_path, index=False)
        per_split[split.name] = {
            "best_epoch": result.best_epoch,
            "best_phase": result.best_phase,
            "distilled": result.distilled,
            "head_epochs": result.head_epochs,
            "fine_tune_epochs": result.fine_tune_epochs,
            "refit": result.refit,
            "val_accuracy": result.val_accuracy,
            "val_clip_accuracy": result.val_clip_accuracy,
            "n_train_clips": len(split.train_clips),
            "n_val_clips": len(split.val_clips),
            "n_test_clips": len(split.test_clips),
            "seconds": round(time.perf_counter() - split_started, 2),
            **{key: round(value, 2) for key, value in result.timings.items()},
        }
        log.info("train %s %s: %s", model_name, split.name, per_split[split.name])
    write_json(
        out_dir / "splits.json",
        {
            "model": model_name,
            "split": params.split,
            "class_names": store.class_names,
            "splits": {
                s.name: {
                    "test_fold": s.test_fold,
                    "train": s.train_clips,
                    "val": s.val_clips,
                    "test": s.test_clips,
                }
                for s in splits
            },
        },
    )
    metrics = {
        "model": model_name,
        "split": params.split,
        "n_classes": len(store.class_names),
        "splits": per_split,
        "seconds": round(time.perf_counter() - started, 2),
        "params": dataclasses.asdict(params),
    }
    write_record(
        out_dir / "train.json", "train", metrics, inputs={"patches": Path(patches_dir) / "index.csv"}
    )
    return metrics


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a YAMNet model on a patch store (cross-validated)")
    add_params_option(parser)
    parser.add_argument("--model", required=True, help="yamnet_256 | yamnet_1024")
    parser.add_argument("--patches", type=Path, default=Path("artifacts/patches"))
    parser.add_argument("--out", type=Path, default=None, help="default: models/<model>/float")
    parser.add_argument("--reports", type=Path, default=None, help="default: reports/<model>")
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    params = load_section(args.params, "train", TrainParams)
    models = load_section(args.params, "models", ModelsParams)
    out = args.out or Path("models") / args.model / "float"
    metrics = run(args.patches, out, params, args.model, args.reports, models)
    summary = {
        name: (row["best_epoch"], round(row["val_accuracy"], 4)) for name, row in metrics["splits"].items()
    }
    print(f"train {args.model}: {metrics['seconds']} s; best epoch / val accuracy per split: {summary}")
    return 0
