"""Training loops: the head on cached embeddings, then optionally the last blocks on cached features.

Epoch e trains on augmented copy e mod K of the cache (K = augment_copies): the reference augments on the fly,
which over 50 epochs draws 50 copies; K copies give the same kind of variation at 1/K-th... of the backbone cost,
with augmentations that repeat every K epochs. Validation data is never augmented. The kept epoch has the best
patch-level validation accuracy (ties: lower validation loss), as the reference's checkpoint does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np

from aed.models.runners import predict_keras
from aed.training.augment import mixup
from aed.training.params import TrainParams
from aed.training.progress import EpochProgress

log = logging.getLogger(__name__)


@dataclass
class Selection:
    """Best epoch so far: (val_accuracy, -val_loss) is maximised."""

    weights: list[np.ndarray] | None = None
    key: tuple[float, float] = (-1.0, -np.inf)
    epoch: int = -1
    since_best: int = 0
    history: list[dict] = field(default_factory=list)

    def offer(self, model: keras.Model, row: dict) -> bool:
        self.history.append(row)
        # Without a validation part (validation_fraction 0) the last epoch wins.
        no_val = np.isnan(row["val_accuracy"])
        key = (float(row["epoch"]), 0.0) if no_val else (row["val_accuracy"], -row["val_loss"])
        if key > self.key:
            self.key, self.epoch, self.weights, self.since_best = key, row["epoch"], model.get_weights(), 0
            return True
        self.since_best += 1
        return False


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[labels]


def class_weight_vector(labels: np.ndarray, n_classes: int) -> np.ndarray:
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return (len(labels) / (n_classes * np.maximum(counts, 1.0))).astype(np.float32)


@dataclass(frozen=True)
class ValidationSet:
    """The validation part of a split, never augmented: the model's inputs, their labels and clip ids."""

    x: np.ndarray
    labels: np.ndarray
    clips: np.ndarray


@dataclass(frozen=True)
class FitData:
    """What a phase fits: copy k of the cached training inputs (epoch e trains on copy e mod n_copies), the
    labels, and optionally copy k's own targets (input mixup, distillation) in place of the one-hot labels."""

    train_copy: Callable[[int], np.ndarray]
    n_copies: int
    labels: np.ndarray
    val: ValidationSet
    soft_targets: Callable[[int], np.ndarray] | None = None


@dataclass(frozen=True)
class FitPlan:
    """How a phase fits: its name in the history, its epochs and learning rate, its loss. Its epochs are
    numbered after `epoch_offset` (fine-tuning continues the head's numbering). `label` names the model and split
    in the progress output (`yamnet_256 fold-1`)."""

    phase: str
    epochs: int
    learning_rate: float
    epoch_offset: int = 0
    loss: str | Callable = "categorical_crossentropy"
    label: str = ""
    # batches per call into TensorFlow: the same updates, fewer round trips from Python
    steps_per_execution: int = 1


def evaluate_split(model: keras.Model, val: ValidationSet, batch_size: int = 256) -> dict[str, float]:
    from aed.evaluation import clip_predictions

    if len(val.x) == 0:
        return {"val_loss": float("nan"), "val_accuracy": float("nan"), "val_clip_accuracy": float("nan")}
    probs = predict_keras(model, val.x, batch_size)
    labels = val.labels
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0))))
    clip_true, clip_pred, _ = clip_predictions(probs, val.clips, labels)
    return {
        "val_loss": loss,
        "val_accuracy": float(np.mean(probs.argmax(axis=1) == labels)),
        "val_clip_accuracy": float(np.mean(clip_true == clip_pred)),
    }


def validation_row(model: keras.Model, phase: str, epoch: int, val: ValidationSet) -> dict:
    """A history row for weights not fitted by an epoch of their own (an average, the head-only start of
    fine-tuning): validation figures only."""
    return {
        "phase": phase,
        "epoch": epoch,
        "loss": float("nan"),
        "accuracy": float("nan"),
        **evaluate_split(model, val),
        "seconds": 0.0,
    }


def train_on_cache(
    model: keras.Model,
    data: FitData,
    plan: FitPlan,
    params: TrainParams,
    rng: np.random.Generator,
    selection: Selection,
) -> Selection:
    """Fit `model` epoch by epoch on cached inputs, keeping the best validation epoch in `selection` (or, with
    train.average_last_epochs, the mean of the last epochs). Selection uses the labels, never soft targets."""
    n_classes = int(model.output_shape[-1])
    model.compile(
        optimizer=keras.optimizers.Adam(plan.learning_rate),
        loss=plan.loss,
        metrics=[label_accuracy(n_classes)],
        steps_per_execution=plan.steps_per_execution,
    )
    hard_targets = one_hot(data.labels, n_classes)
    weights = class_weight_vector(data.labels, n_classes)[data.labels] if params.class_weights else None
    average = WeightAverage(params.average_last_epochs, plan.epochs)
    progress = EpochProgress(plan.label, plan.phase, plan.epochs)
    for epoch in range(plan.epochs):
        started = time.perf_counter()
        x, y = _epoch_inputs(data, hard_targets, epoch, params.mixup_alpha, rng)
        fitted = model.fit(
            x, y, batch_size=params.batch_size, epochs=1, shuffle=True, verbose=0, sample_weight=weights
        ).history
        row = _epoch_row(model, plan, epoch, fitted, data.val, started)
        if average.enabled:
            # Epochs are not selected: the phase's one candidate is the average, offered after the loop.
            selection.history.append(row)
            average.add(model, epoch)
        else:
            selection.offer(model, row)
        progress.update(row, selection.epoch)
        if params.early_stopping_patience and selection.since_best >= params.early_stopping_patience:
            log.info("%s: early stop at epoch %d (best %d)", plan.phase, row["epoch"], selection.epoch)
            break
    progress.close()
    if average.enabled:
        _offer_average(model, average, plan.phase, data.val, selection)
    return selection


def _epoch_inputs(
    data: FitData, hard_targets: np.ndarray, epoch: int, mixup_alpha: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The epoch's copy of the cache and its targets, mixed (manifold mixup) when asked."""
    copy = epoch % data.n_copies
    x, y = data.train_copy(copy), hard_targets if data.soft_targets is None else data.soft_targets(copy)
    if mixup_alpha > 0:
        x, y = mixup(x, y, mixup_alpha, rng)
    return x, y


def _epoch_row(
    model: keras.Model, plan: FitPlan, epoch: int, fitted: dict, val: ValidationSet, started: float
) -> dict:
    """The epoch's history row: its training figures, then the validation part's."""
    row = {
        "phase": plan.phase,
        "epoch": plan.epoch_offset + epoch + 1,
        "loss": float(fitted["loss"][-1]),
        "accuracy": float(fitted["accuracy"][-1]),
        **evaluate_split(model, val),
        "seconds": 0.0,
    }
    row["seconds"] = round(time.perf_counter() - started, 3)
    return row


def _offer_average(
    model: keras.Model, average: WeightAverage, phase: str, val: ValidationSet, selection: Selection
) -> None:
    """The averaged weights become the model and the phase's candidate, numbered as its last epoch."""
    model.set_weights(average.mean())
    row = validation_row(model, f"{phase}_average", selection.history[-1]["epoch"], val)
    # A fresh selection always takes it; fine-tuning's keeps the head-only model if that validates better.
    selection.offer(model, row)


def label_accuracy(n_classes: int) -> Callable:
    """Training accuracy against the label columns of the targets (the first n_classes: kd targets carry the
    teacher's columns after them)."""

    def accuracy(y_true, y_pred):
        return keras.metrics.categorical_accuracy(y_true[:, :n_classes], y_pred)

    return accuracy


def kd_loss(n_classes: int, weight: float, temperature: float) -> Callable:
    """Hinton et al.'s distillation loss on targets [labels | the teacher's softmax at T]:
    (1 - w) * CE(labels, p) + w * T^2 * CE(teacher_T, softmax(log p / T)). The student outputs a softmax p, and
    log p equals its logits up to a per-row constant, so softmax(log p / T) is the student at temperature T; T^2
    keeps the soft term's gradients at the hard term's scale."""
    ops = keras.ops

    def loss(y_true, y_pred):
        labels, teacher = y_true[:, :n_classes], y_true[:, n_classes:]
        log_p = ops.log(ops.clip(y_pred, 1e-7, 1.0))
        hard = -ops.sum(labels * log_p, axis=-1)
        soft = -ops.sum(teacher * ops.log_softmax(log_p / temperature, axis=-1), axis=-1)
        return (1.0 - weight) * hard + weight * temperature**2 * soft

    return loss


class WeightAverage:
    """Mean of the weights after each of the last `last_n` epochs of a phase (stochastic weight averaging with a
    constant learning rate): a flatter solution than any single epoch, and no epoch picked on validation noise.
    Batch norm stays frozen in every phase, so the averaged model needs no statistics update."""

    def __init__(self, last_n: int, epochs: int) -> None:
        self.enabled = last_n > 0
        self.first_epoch = max(0, epochs - last_n)
        self.total: list[np.ndarray] | None = None
        self.count = 0

    def add(self, model: keras.Model, epoch: int) -> None:
        if epoch < self.first_epoch:
            return
        weights = [np.asarray(w, np.float64) for w in model.get_weights()]
        self.total = (
            weights if self.total is None else [t + w for t, w in zip(self.total, weights, strict=True)]
        )
        self.count += 1

    def mean(self) -> list[np.ndarray]:
        if self.total is None:
            raise RuntimeError("no epoch was averaged")
        return [(t / self.count).astype(np.float32) for t in self.total]
