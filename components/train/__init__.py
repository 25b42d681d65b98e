"""Step `train`: patch store -> one Keras model per split (5-fold CV) + the deployable model, histories, record.

Outputs (out_dir = models/<model>/float):
    <split>/model.keras      split = fold-1 ... fold-5 (or random / predefined), and final (all clips)
    splits.json              the clips of every split's train / validation / test parts (quantize and
                             evaluate read it, so calibration and testing use exactly these clips)
    train.json               record: params, best epoch and validation accuracy per split, timings
reports_dir/history/<split>.csv   per-epoch history (DVC plots)

Distillation: `train.teacher` names the model that teaches (train.overrides.yamnet_256.teacher: yamnet_1024);
its train output is an explicit input (`teacher_dir`, `aed train --teacher DIR`, the KFP task's `teacher`
artifact). A configured teacher that is not given fails the step, unless the teacher is not in models.names (it
is not trained in this run): then the model trains on the labels alone, says so on the console, and train.json's
`distillation` records the skipped teacher and why. It never trains silently without it.

Before any work the step prints the model's effective settings, each with its source (aed.settings, the same
table as `aed params show --model NAME`), and during training one progress line per epoch (aed.training.progress).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aed.artifacts import SPLITS_FILE, TRAIN_RECORD_FILE
from aed.models.config import ModelsParams
from aed.models.mirror import check_mirror
from aed.outputs import OutputSpec, publishing, replacing
from aed.params import load_section, read_params
from aed.records import write_json, write_record
from aed.settings import effective_settings, format_settings, given_from_values
from aed.training import TrainParams
from components.common import add_model_name_option, add_params_option

# TensorFlow comes with the trainer (aed.training.jobs, ModelSource): imported by the functions that train, so
# that `aed --help` stays fast.
if TYPE_CHECKING:
    from aed.patchstore import PatchStore
    from aed.splits import Split
    from aed.training import ModelSource
    from aed.training.teacher import Distillation


def run(
    params: TrainParams,
    model_name: str,
    patches_dir: Path,
    out_dir: Path,
    reports_dir: Path,
    models: ModelsParams | None = None,
    teacher_dir: Path | None = None,
    section: Mapping[str, Any] | None = None,
) -> dict:
    """Train `model_name` on every split of the patch store into out_dir (histories into reports_dir);
    `teacher_dir` is the train output of the model train.teacher names. `section` is the train section as the
    params file has it, only to say where each printed setting comes from (None: judged against the defaults).
    Returns the train.json figures."""
    models = models or ModelsParams()
    models.validate()
    # The pretrained weights are checked before TensorFlow loads and any data is read (CLI, DVC and KFP alike):
    # a missing mirror fails at once, not a minute in.
    check_mirror(model_name, user_weights=model_name == "yamnet_1024" and bool(models.yamnet_1024_h5))
    from aed.patchstore import load_patch_store
    from aed.training import ModelSource
    from aed.training.jobs import check_teacher_splits, model_params, plan_splits

    own, distillation = model_params(params, model_name, teacher_dir, models.names)
    _print_settings(params, model_name, section, distillation)
    params = own
    store = load_patch_store(patches_dir)
    splits = plan_splits(store, params)
    check_teacher_splits(params, teacher_dir, splits)
    out_dir, reports_dir = Path(out_dir), Path(reports_dir)
    source = ModelSource(True, *models.h5_for(model_name))
    # The model folder is written aside and swapped in whole; the histories join a folder shared with evaluate.
    sources = {"patch store": Path(patches_dir), "teacher": Path(teacher_dir) if teacher_dir else None}
    with (
        replacing(out_dir, OutputSpec("train"), sources, dataclasses.asdict(params)) as staging,
        publishing(reports_dir) as staged_reports,
    ):
        return _train_into(
            staging, staged_reports, patches_dir, store, splits, params, model_name, source, teacher_dir,
            distillation,
        )  # fmt: skip


def _print_settings(
    params: TrainParams, model_name: str, section: Mapping[str, Any] | None, distillation: Distillation
) -> None:
    """The model's effective settings, one line each with its source, and a skipped teacher: before any work, on
    the console of `aed train`, `dvc repro` and the Kubeflow task alike."""
    given = given_from_values(params) if section is None else section
    rows = effective_settings("train", TrainParams, given, model_name)
    print(
        f"train {model_name}: effective settings (source: default | params.yaml | train.overrides.{model_name})"
    )
    print("\n".join(format_settings(rows)))
    if distillation.skipped:
        print(
            f"train {model_name}: distillation skipped: {distillation.skipped}; training on the labels alone"
        )
    sys.stdout.flush()


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
    distillation: Distillation,
) -> dict:
    from aed.training.jobs import (
        choose_workers,
        largest_training_part,
        plan_jobs,
        run_split_jobs,
        splits_layout,
    )

    started = time.perf_counter()
    jobs = plan_jobs(splits, patches_dir, model_name, params, source, out_dir, reports_dir, teacher_dir)
    cores = len(os.sched_getaffinity(0))
    workers, why = choose_workers(params.jobs, len(splits), largest_training_part(store, splits), cores)
    print(f"train {model_name}: {len(splits)} splits, {workers} at a time ({why})", flush=True)
    figures = run_split_jobs(jobs, workers, store)
    write_json(out_dir / SPLITS_FILE, splits_layout(model_name, params, store.class_names, splits))
    metrics = {
        "model": model_name,
        "split": params.split,
        "n_classes": len(store.class_names),
        "splits": {
            split.name: split_figures.row() for split, split_figures in zip(splits, figures, strict=True)
        },
        "seconds": round(time.perf_counter() - started, 2),
        "workers": workers,
        "params": dataclasses.asdict(params),
        # what became of the configured teacher (used, or skipped and why): the record says so, not only the log
        "distillation": distillation.record(),
    }
    inputs = {"patches": Path(patches_dir) / "index.csv"}
    if teacher_dir is not None:
        inputs["teacher"] = Path(teacher_dir)  # the whole train output: its models and splits.json
    write_record(out_dir / TRAIN_RECORD_FILE, "train", metrics, inputs=inputs)
    return metrics


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a YAMNet model on a patch store (cross-validated)")
    add_params_option(parser)
    add_model_name_option(parser, help="the model to train: yamnet_256 | yamnet_1024")
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
    model = args.model_name
    models = load_section(args.params, "models", ModelsParams)
    params = load_section(args.params, "train", TrainParams)
    section = read_params(args.params).get("train")  # as written: the printed settings' sources
    out = args.out or Path("models") / model / "float"
    reports = args.reports or Path("reports") / model
    metrics = run(params, model, args.patches, out, reports, models, args.teacher, section)
    summary = {
        name: (row["best_epoch"], row["val_accuracy"] and round(row["val_accuracy"], 4))
        for name, row in metrics["splits"].items()
    }
    print(f"train {model}: {metrics['seconds']} s; best epoch / val accuracy per split: {summary}")
    return 0
