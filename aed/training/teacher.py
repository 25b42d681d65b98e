"""Distillation's teacher: checks that the given teacher is the configured one and never saw the split's test
clips, its same-split model, and the softening of its outputs."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from aed.artifacts import FLOAT_MODEL_FILE, SPLITS_FILE
from aed.models.runners import load_keras
from aed.splits import Split
from aed.training.params import TrainParams


def soften(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax outputs at a temperature: softmax(logits / T) computed from the probabilities themselves, since
    log p differs from the logits only by a per-row constant. T = 1 returns them unchanged."""
    if temperature == 1.0:
        return probabilities
    scaled = np.log(np.maximum(probabilities, 1e-12)) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    softened = np.exp(scaled)
    return softened / softened.sum(axis=1, keepdims=True)


def check_teacher_given(params: TrainParams, model_name: str, teacher_dir: Path | None) -> None:
    """A configured teacher must be given, and a given one configured: training silently without distillation
    (or with a teacher nobody asked for) would give another model than the params say."""
    if params.teacher and teacher_dir is None:
        raise ValueError(
            f"train: {params.teacher} teaches {model_name} (train.teacher) but no teacher folder was given: "
            f"pass {params.teacher}'s train output (aed train --teacher DIR, e.g. models/{params.teacher}/float), "
            f"or leave {params.teacher} out of models.names to train without distillation"
        )
    if not params.teacher and teacher_dir is not None:
        raise ValueError(
            f"train: a teacher folder ({teacher_dir}) was given but train.teacher is null for {model_name}"
        )


@dataclass(frozen=True)
class Distillation:
    """What became of a model's configured teacher: used, skipped (with why) or none configured. train.json
    records it, so a model trained without its teacher says so."""

    teacher: str | None  # the configured teacher (train.teacher, or the model's override)
    used: bool
    skipped: str | None = None  # why the configured teacher was not used

    def record(self) -> dict:
        return dataclasses.asdict(self)


def plan_distillation(
    params: TrainParams, model_name: str, teacher_dir: Path | None, trained: Sequence[str]
) -> tuple[TrainParams, Distillation]:
    """The parameters to train with and what happens to the teacher. A configured teacher that is not among the
    models being trained (`trained`: models.names) and not given is skipped: the model trains on the labels alone,
    and the returned params say `teacher: null`. A teacher among them must be given (check_teacher_given): it is
    trained in the same run, so a missing folder is a wiring mistake, not a choice."""
    teacher = params.teacher
    if teacher is not None and teacher_dir is None and teacher not in trained:
        why = f"its teacher {teacher} is not in models.names {list(trained)}"
        return dataclasses.replace(params, teacher=None), Distillation(teacher, False, why)
    check_teacher_given(params, model_name, teacher_dir)
    return params, Distillation(teacher, teacher is not None)


def check_teacher_dir(teacher_dir: Path, teacher: str, split_names: list[str]) -> None:
    """Before any training: `teacher_dir` is `teacher`'s train output and has a model for every split."""
    layout_path = Path(teacher_dir) / SPLITS_FILE
    if not layout_path.is_file():
        raise FileNotFoundError(f"{layout_path}: missing; train the teacher model ({teacher}) first")
    try:
        layout = json.loads(layout_path.read_text())
        trained, splits = layout["model"], layout["splits"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{layout_path}: not a train output's splits.json ({error})") from None
    if trained != teacher:
        raise ValueError(f"{layout_path}: holds {trained}'s models, but train.teacher is {teacher}")
    missing = [name for name in split_names if name not in splits]
    if missing:
        raise ValueError(f"{layout_path}: the teacher has no split(s) {missing}")


def load_teacher(teacher_dir: Path, split: Split) -> keras.Model:
    """The teacher's model of the same split. Its splits.json must list the same test clips and the same non-test
    clips: a teacher that saw this split's test clips would leak them."""
    layout_path = teacher_dir / SPLITS_FILE
    if not layout_path.is_file():
        raise FileNotFoundError(f"{layout_path}: missing; train the teacher model first")
    layout = json.loads(layout_path.read_text())["splits"].get(split.name)
    if layout is None:
        raise ValueError(f"{layout_path}: the teacher has no split {split.name!r}")
    # The teacher must not have trained on this split's test clips: the same test clips, and the same non-test
    # clips (its own train / validation line may differ, e.g. this model refits on train + validation).
    if sorted(layout["test"]) != sorted(split.test_clips):
        raise ValueError(f"{layout_path}: the teacher's {split.name} test clips differ from this split's")
    if sorted(layout["train"] + layout["val"]) != sorted(split.train_clips + split.val_clips):
        raise ValueError(
            f"{layout_path}: the teacher's {split.name} train + val clips differ from this split's"
        )
    return load_keras(teacher_dir / split.name / FLOAT_MODEL_FILE)
