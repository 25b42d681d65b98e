"""Parameters of `aed train` (params.yaml section `train`): shared keys plus per-model overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from aed.params import ParamsError, bounded, from_dict


@dataclass(frozen=True)
class TrainParams:
    # splits
    split: Literal["folds", "random", "predefined"] = "folds"
    folds: list[int] | None = None  # subset of test folds (CI); None = every fold of the index
    validation_fraction: float = bounded(0.2, 0.0, 0.5)  # of the training clips, selects the epoch
    random_test_size: float = bounded(0.2, 0.05, 0.5)
    seed: int = 120
    final_model: bool = True  # also train on every clip: the deployable model (no held-out test)
    refit: bool = False  # after selecting epochs on the validation part, retrain on train + validation
    # splits trained at once, each in its own process (1: in this process; 0: chosen from the work,
    # aed.training.jobs.choose_workers)
    jobs: int = bounded(0, 0, 64)
    # head training on cached embeddings (frozen backbone), the reference recipe
    epochs: int = bounded(50, 1, 1000)
    batch_size: int = bounded(16, 1, 4096)
    learning_rate: float = bounded(1e-3, 1e-6, 1.0)
    dropout: float = bounded(0.0, 0.0, 0.9)
    hidden_units: int = bounded(0, 0, 4096)
    embedding_cache: bool = True  # False: the reference's end-to-end fit with a frozen backbone (slow)
    # augmentation on log-mel patches (before the backbone)
    augment: bool = True
    augment_copies: int = bounded(4, 1, 64)  # augmented copies cached; epoch e trains on copy e mod K
    time_shift: int = bounded(0, 0, 72)  # frames; patches re-cut at a random offset (0 = off, the reference)
    gaussian_noise: float = bounded(0.1, 0.0, 5.0)
    volume_min: float = bounded(0.8, 0.0, 10.0)
    volume_max: float = bounded(1.2, 0.0, 10.0)
    spec_time_masks: int = bounded(0, 0, 10)
    spec_time_width: int = bounded(0, 0, 96)
    spec_freq_masks: int = bounded(0, 0, 10)
    spec_freq_width: int = bounded(0, 0, 64)
    mixup_alpha: float = bounded(0.0, 0.0, 10.0)  # on cached features (manifold mixup); 0 = off
    input_mixup_alpha: float = bounded(0.0, 0.0, 10.0)  # on log-mel patches, before the cache; 0 = off
    class_weights: bool = False
    early_stopping_patience: int = bounded(0, 0, 1000)  # 0 = off
    # > 0: each phase keeps the mean weights of its last N epochs (SWA), not its best validation epoch
    average_last_epochs: int = bounded(0, 0, 1000)
    # fine-tuning the last K backbone blocks after the head (lower learning rate)
    fine_tune_blocks: int = bounded(0, 0, 14)
    fine_tune_epochs: int = bounded(10, 0, 1000)
    fine_tune_learning_rate: float = bounded(1e-4, 1e-7, 1.0)
    # knowledge distillation: targets = (1 - w) * one-hot + w * the teacher's softmax on the clean training patch
    # (or on each augmented copy: teacher_on_augmented). `teacher` names the model that teaches (e.g. yamnet_1024);
    # its train output is given to the step explicitly (`aed train --teacher DIR`, the KFP task's `teacher` input),
    # never looked up in the working directory. Its same-split model must have the same test and non-test clips
    # (checked), so it never saw this split's test clips.
    teacher: str | None = None
    teacher_weight: float = bounded(0.5, 0.0, 1.0)
    teacher_on_augmented: bool = False  # the teacher labels each augmented (mixed) copy, not the clean patch
    # > 1 softens the teacher's softmax (p ** (1 / T), renormalized: its logits divided by T)
    teacher_temperature: float = bounded(1.0, 0.1, 100.0)
    # targets: cross-entropy on the mixed targets above (the student learns the softened teacher itself);
    # kd: Hinton et al.'s loss, (1 - w) * CE(labels, student) + w * T^2 * CE(teacher at T, student at T), whose
    # soft term is minimal when the student's logits match the teacher's (up to a constant)
    distillation: Literal["targets", "kd"] = "targets"
    # per-model overrides of any key above: {yamnet_256: {fine_tune_blocks: 1}, ...}
    overrides: dict[str, Any] = field(default_factory=dict)

    def for_model(self, model_name: str) -> TrainParams:
        """These parameters with the model's overrides applied (validated like the section itself)."""
        override = self.overrides.get(model_name) or {}
        if not isinstance(override, dict):
            raise ParamsError(f"train.overrides.{model_name}: expected a mapping of keys, got {override!r}")
        override = dict(override)
        if not override:
            return dataclasses.replace(self, overrides={})
        base = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "overrides"}
        merged = from_dict(TrainParams, {**base, **override}, f"train.overrides.{model_name}")
        return dataclasses.replace(merged, overrides={})

    def teacher_for(self, model_name: str) -> str | None:
        """The model that teaches `model_name` (None: no distillation); refuses an unknown or self teacher."""
        from aed.model_specs import check_model_name
        from aed.params import ParamsError

        teacher = self.for_model(model_name).teacher
        if teacher is None:
            return None
        overridden = "teacher" in (self.overrides.get(model_name) or {})
        name = f"train.overrides.{model_name}.teacher" if overridden else "train.teacher"
        if teacher == model_name:
            raise ParamsError(f"{name}: {model_name} cannot teach itself")
        return check_model_name(teacher, name)

    def validate(self) -> None:
        from aed.params import ParamsError

        if self.average_last_epochs and self.early_stopping_patience:
            raise ParamsError(
                "train.average_last_epochs and train.early_stopping_patience exclude each other"
            )
        if self.volume_min > self.volume_max:
            raise ParamsError(f"train.volume_min {self.volume_min} > train.volume_max {self.volume_max}")
        # The end-to-end fit (the reference's way) trains the head behind a frozen backbone and nothing else:
        # refused here, before any data is read, rather than trained into another model than the params say.
        if not self.embedding_cache and self.fine_tune_blocks:
            raise ParamsError(
                "train.fine_tune_blocks: must be 0 with train.embedding_cache: false "
                "(the end-to-end fit supports the frozen backbone only)"
            )
        if not self.embedding_cache and self.teacher:
            raise ParamsError(
                "train.teacher: distillation needs train.embedding_cache: true "
                "(the end-to-end fit has no teacher targets)"
            )
