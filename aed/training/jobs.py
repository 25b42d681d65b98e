"""A model's training jobs: the splits to train (cross-validation folds, the final model), one job per split,
run in this process or in worker processes, each saving its model and history and giving its typed figures."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from aed.artifacts import FLOAT_MODEL_FILE
from aed.models.yamnet import MODEL_SPECS
from aed.patchstore import PatchStore, load_patch_store
from aed.splits import Split, full_training_split, make_splits
from aed.training.params import TrainParams
from aed.training.progress import use_lines
from aed.training.teacher import Distillation, check_teacher_dir, plan_distillation
from aed.training.trainer import ModelSource, train_split
from aed.workers import run_all

log = logging.getLogger(__name__)


def model_params(
    params: TrainParams, model_name: str, teacher_dir: Path | None, trained: Sequence[str]
) -> tuple[TrainParams, Distillation]:
    """The model's own parameters (its overrides applied) and what becomes of its teacher, checked before any data
    is read: a known model, and a valid teacher (not itself, a known model) that is given when one is configured,
    unless it is not among the models being trained (`trained`, models.names): then distillation is skipped."""
    if model_name not in MODEL_SPECS:
        raise ValueError(f"train: unknown model {model_name!r}; known: {sorted(MODEL_SPECS)}")
    params.teacher_for(model_name)
    own = params.for_model(model_name)
    own.validate()
    return plan_distillation(own, model_name, teacher_dir, trained)


def plan_splits(store: PatchStore, params: TrainParams) -> list[Split]:
    """The splits to train, in the record's order: the test folds (or the random / predefined split), then the
    final model on every clip when train.final_model."""
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
    return splits


def check_teacher_splits(params: TrainParams, teacher_dir: Path | None, splits: list[Split]) -> None:
    """Before any training: the given teacher output is the configured teacher's, with a model per split."""
    if params.teacher is not None and teacher_dir is not None:
        check_teacher_dir(Path(teacher_dir), params.teacher, [split.name for split in splits])


def splits_layout(model_name: str, params: TrainParams, class_names: list[str], splits: list[Split]) -> dict:
    """splits.json: the clips of every split's parts, so that later steps calibrate and test on exactly them."""
    return {
        "model": model_name,
        "split": params.split,
        "class_names": class_names,
        "splits": {
            s.name: {
                "test_fold": s.test_fold,
                "train": s.train_clips,
                "val": s.val_clips,
                "test": s.test_clips,
            }
            for s in splits
        },
    }


@dataclass(frozen=True)
class SplitJob:
    """One split to train, and where its model (out_dir/<split>/model.keras) and history go."""

    patches_dir: Path
    split: Split
    model_name: str
    params: TrainParams
    source: ModelSource
    out_dir: Path
    reports_dir: Path
    teacher_dir: Path | None = None


@dataclass(frozen=True)
class SplitFigures:
    """A trained split's figures: its row of train.json. The validation figures are None without a validation
    part (JSON has no NaN); `timings` are the training phases' seconds (load_s, cache_s, head_s, ...)."""

    best_epoch: int
    best_phase: str
    distilled: bool
    head_epochs: int
    fine_tune_epochs: int
    refit: bool
    val_accuracy: float | None
    val_clip_accuracy: float | None
    n_train_clips: int
    n_val_clips: int
    n_test_clips: int
    seconds: float
    timings: dict[str, float]

    def row(self) -> dict[str, Any]:
        """The train.json row: the fields in order, the timings flattened after them."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "timings"}
        return {**fields, **self.timings}


def plan_jobs(
    splits: list[Split],
    patches_dir: Path,
    model_name: str,
    params: TrainParams,
    source: ModelSource,
    out_dir: Path,
    reports_dir: Path,
    teacher_dir: Path | None,
) -> list[SplitJob]:
    return [
        SplitJob(Path(patches_dir), split, model_name, params, source, out_dir, reports_dir, teacher_dir)
        for split in splits
    ]


def train_and_save(job: SplitJob, store: PatchStore | None = None) -> SplitFigures:
    """Train one split, save its model and history; returns its figures. Module-level: it is what a worker
    process runs when train.jobs > 1 (loading the patch store itself)."""
    started = time.perf_counter()
    store = load_patch_store(job.patches_dir) if store is None else store
    split = job.split
    result = train_split(store, split, job.model_name, job.params, job.source, job.teacher_dir)
    (job.out_dir / split.name).mkdir(parents=True, exist_ok=True)
    result.model.save(job.out_dir / split.name / FLOAT_MODEL_FILE)
    history_path = job.reports_dir / "history" / f"{split.name}.csv"
    history_path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(result.history).to_csv(history_path, index=False)
    figures = SplitFigures(
        best_epoch=result.best_epoch,
        best_phase=result.best_phase,
        distilled=result.distilled,
        head_epochs=result.head_epochs,
        fine_tune_epochs=result.fine_tune_epochs,
        refit=result.refit,
        val_accuracy=_finite_or_none(result.val_accuracy),
        val_clip_accuracy=_finite_or_none(result.val_clip_accuracy),
        n_train_clips=len(split.train_clips),
        n_val_clips=len(split.val_clips),
        n_test_clips=len(split.test_clips),
        seconds=round(time.perf_counter() - started, 2),
        timings={key: round(value, 2) for key, value in result.timings.items()},
    )
    log.info("train %s %s: %s", job.model_name, split.name, figures.row())
    return figures


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


# train.jobs 0 (the default) chooses the worker processes from the work: a worker pays TensorFlow's import and its
# own network and store loading before its first split. bench/split_jobs.py on a quiet 2-core machine (YAMNet-256,
# 3 classes x 12 clips, 137 training patches per split, 6 splits, the params.yaml recipe; interleaved runs of
# `aed train`, 5 repeats, medians; a valid run, 2026-11-30): jobs 1 116.0 s, jobs 2 91.1 s (1.27x). So two workers
# train from the smallest dataset measured (docs/models.md, "Split-jobs benchmark"); below it (a few dozen
# patches, as in tests) one process: there a split takes seconds and the workers' start-up is unmeasured. The
# earlier rule (one process below 1,000 patches) came from runs on a machine loaded with other jobs, where no core
# was free: there set train.jobs: 1.
AUTO_MIN_TRAIN_PATCHES = 128  # training patches of the largest split, from which two workers train
AUTO_MAX_WORKERS = 2  # measured on 2 cores only; more workers are unmeasured


def choose_workers(requested: int, n_splits: int, train_patches: int, cores: int) -> tuple[int, str]:
    """(split worker processes, why): train.jobs when set (> 0), else chosen from the work (train.jobs 0)."""
    if requested > 0:
        return max(1, min(requested, n_splits)), f"train.jobs {requested}"
    if n_splits < 2 or cores < 2:
        return 1, f"auto: {n_splits} split(s) on {cores} core(s)"
    if train_patches < AUTO_MIN_TRAIN_PATCHES:
        return 1, f"auto: {train_patches} training patches per split < {AUTO_MIN_TRAIN_PATCHES}"
    workers = min(AUTO_MAX_WORKERS, cores, n_splits)
    return workers, f"auto: {train_patches} training patches per split >= {AUTO_MIN_TRAIN_PATCHES}"


def largest_training_part(store: PatchStore, splits: list[Split]) -> int:
    """The training patches of the largest split: the measure of the work choose_workers weighs."""
    return max((len(split.rows(store.index, "train")) for split in splits), default=0)


def run_split_jobs(jobs: list[SplitJob], workers: int, store: PatchStore | None = None) -> list[SplitFigures]:
    """The splits' figures in order. workers > 1: that many spawned processes with cores / workers TensorFlow
    threads each: small-batch training keeps two threads partly idle, so two single-threaded splits at once finish
    sooner on 2 cores (bench/split_jobs.py; choose_workers says when). Each split is seeded on its own, so the order
    does not matter.
    On a failure the splits not started are cancelled and the ones running finish first; on SIGTERM or Ctrl-C every
    worker is killed at once (aed.workers.run_all)."""
    workers = min(workers, len(jobs))
    if workers <= 1:
        return [train_and_save(job, store) for job in jobs]
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    return run_all(train_and_save, jobs, workers, lambda job: f"train {job.model_name} {job.split.name}",
                   _init_worker, (threads,))  # fmt: skip


def _init_worker(threads: int) -> None:
    """A training worker: `threads` TensorFlow threads, warnings-level logging (spawned processes have none), and
    progress as lines (the workers share the terminal: bars would overwrite each other)."""
    import tensorflow as tf

    use_lines()

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    logging.basicConfig(level=logging.WARNING)
