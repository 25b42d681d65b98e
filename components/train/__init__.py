"""Step `train`: patch store -> one Keras model per split (5-fold CV) + the deployable model, histories, record.

Outputs (out_dir = models/<model>/float):
    <split>/model.keras      split = fold-1 ... fold-5 (or random / predefined), and final (all clips)
    splits.json              the clips of every split's train / validation / test parts (quantize and
                             evaluate read it, so calibration and testing use exactly these clips)
    train.json               record: params, best epoch and validation accuracy per split, timings
reports_dir/history/<split>.csv   per-epoch history (DVC plots)

Distillation: `train.teacher` names the model that teaches (train.overrides.yamnet_256.teacher: yamnet_1024);
its train output is an explicit input (`teacher_dir`, `aed train --teacher DIR`, the KFP task's `teacher`
artifact). A configured teacher that is not given fails the step: it never trains silently without it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import pandas as pd

from aed.models.config import ModelsParams
from aed.outputs import OutputSpec, publishing, replacing
from aed.params import load_section
from aed.patchstore import PatchStore, load_patch_store
from aed.records import write_json, write_record
from aed.splits import Split, full_training_split, make_splits
from aed.training import ModelSource, TrainParams, train_split
from aed.training.trainer import check_teacher_dir, check_teacher_given
from components.common import add_params_option

log = logging.getLogger(__name__)


def run(
    patches_dir: Path,
    out_dir: Path,
    params: TrainParams,
    model_name: str,
    reports_dir: Path,
    models: ModelsParams | None = None,
    teacher_dir: Path | None = None,
) -> dict:
    models = models or ModelsParams()
    models.validate()
    teacher = params.teacher_for(model_name)
    params = params.for_model(model_name)
    params.validate()
    check_teacher_given(params, model_name, teacher_dir)
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
    if teacher is not None and teacher_dir is not None:
        check_teacher_dir(Path(teacher_dir), teacher, [split.name for split in splits])
    out_dir, reports_dir = Path(out_dir), Path(reports_dir)
    yamnet_h5, yamnet_h5_sha256 = models.h5_for(model_name)
    source = ModelSource(True, yamnet_h5, yamnet_h5_sha256)
    # The model folder is written aside and swapped in whole; the histories join a folder shared with evaluate.
    sources = {"patch store": Path(patches_dir), "teacher": Path(teacher_dir) if teacher_dir else None}
    with (
        replacing(out_dir, OutputSpec("train"), sources, dataclasses.asdict(params)) as staging,
        publishing(reports_dir) as staged_reports,
    ):
        metrics = _train_into(
            staging, staged_reports, patches_dir, store, splits, params, model_name, source, teacher_dir
        )
    return metrics


def _train_into(
    out_dir: Path,
    reports_dir: Path,
    patches_dir: Path,
    store: PatchStore,
    splits: list[Split],
    params: TrainParams,
    model_name: str,
    source: ModelSource,
    teacher_dir: Path | None,
) -> dict:
    started = time.perf_counter()
    jobs = [
        SplitJob(Path(patches_dir), split, model_name, params, source, out_dir, reports_dir, teacher_dir)
        for split in splits
    ]
    rows = run_split_jobs(jobs, params.jobs, store)
    per_split = dict(zip([split.name for split in splits], rows, strict=True))
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
    inputs = {"patches": Path(patches_dir) / "index.csv"}
    if teacher_dir is not None:
        inputs["teacher"] = Path(teacher_dir)  # the whole train output: its models and splits.json
    write_record(out_dir / "train.json", "train", metrics, inputs=inputs)
    return metrics


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


@dataclass(frozen=True)
class SplitJob:
    patches_dir: Path
    split: Split
    model_name: str
    params: TrainParams
    source: ModelSource
    out_dir: Path
    reports_dir: Path
    teacher_dir: Path | None = None


def train_and_save(job: SplitJob, store: PatchStore | None = None) -> dict:
    """Train one split, save its model and history; returns its row of train.json. Module-level: it is what a
    worker process runs when train.jobs > 1."""
    started = time.perf_counter()
    store = load_patch_store(job.patches_dir) if store is None else store
    split = job.split
    result = train_split(store, split, job.model_name, job.params, job.source, job.teacher_dir)
    (job.out_dir / split.name).mkdir(parents=True, exist_ok=True)
    result.model.save(job.out_dir / split.name / "model.keras")
    history_path = job.reports_dir / "history" / f"{split.name}.csv"
    history_path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(result.history).to_csv(history_path, index=False)
    row = {
        "best_epoch": result.best_epoch,
        "best_phase": result.best_phase,
        "distilled": result.distilled,
        "head_epochs": result.head_epochs,
        "fine_tune_epochs": result.fine_tune_epochs,
        "refit": result.refit,
        # None without a validation part (validation_fraction 0): JSON has no NaN
        "val_accuracy": _finite_or_none(result.val_accuracy),
        "val_clip_accuracy": _finite_or_none(result.val_clip_accuracy),
        "n_train_clips": len(split.train_clips),
        "n_val_clips": len(split.val_clips),
        "n_test_clips": len(split.test_clips),
        "seconds": round(time.perf_counter() - started, 2),
        **{key: round(value, 2) for key, value in result.timings.items()},
    }
    log.info("train %s %s: %s", job.model_name, split.name, row)
    return row


def run_split_jobs(jobs: list[SplitJob], workers: int, store: PatchStore | None = None) -> list[dict]:
    """The splits' rows in order. workers > 1: that many spawned processes with cores / workers TensorFlow threads
    each; small-batch training keeps two threads half idle, so two single-threaded splits at once train 1.3x
    faster on 2 cores (bench/split_jobs.py). Each split is seeded on its own, so the order does not matter. On a
    failure the splits not started are cancelled; the ones running finish first."""
    workers = min(workers, len(jobs))
    if workers <= 1:
        return [train_and_save(job, store) for job in jobs]
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    with ProcessPoolExecutor(workers, get_context("spawn"), _init_worker, (threads,)) as pool:
        futures = [pool.submit(train_and_save, job) for job in jobs]
        rows = []
        for job, future in zip(jobs, futures, strict=True):
            try:
                rows.append(future.result())
            except Exception as error:
                for pending in futures:
                    pending.cancel()
                raise RuntimeError(f"train {job.model_name} {job.split.name} failed: {error}") from error
        return rows


def _init_worker(threads: int) -> None:
    """A training worker: `threads` TensorFlow threads, warnings-level logging (spawned processes have none)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    logging.basicConfig(level=logging.WARNING)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a YAMNet model on a patch store (cross-validated)")
    add_params_option(parser)
    parser.add_argument("--model", required=True, help="yamnet_256 | yamnet_1024")
    parser.add_argument("--patches", type=Path, default=Path("artifacts/patches"))
    parser.add_argument("--out", type=Path, default=None, help="default: models/<model>/float")
    parser.add_argument("--reports", type=Path, default=None, help="default: reports/<model>")
    parser.add_argument(
        "--teacher",
        type=Path,
        default=None,
        metavar="DIR",
        help="train output of the model train.teacher names (e.g. models/yamnet_1024/float); required then",
    )
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    params = load_section(args.params, "train", TrainParams)
    models = load_section(args.params, "models", ModelsParams)
    out = args.out or Path("models") / args.model / "float"
    reports = args.reports or Path("reports") / args.model
    metrics = run(args.patches, out, params, args.model, reports, models, args.teacher)
    summary = {
        name: (row["best_epoch"], row["val_accuracy"] and round(row["val_accuracy"], 4))
        for name, row in metrics["splits"].items()
    }
    print(f"train {args.model}: {metrics['seconds']} s; best epoch / val accuracy per split: {summary}")
    return 0
