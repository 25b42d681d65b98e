"""Train one model on one split: cache features, train the head, optionally fine-tune the last blocks."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from aed.artifacts import FINAL_SPLIT
from aed.models.runners import predict_keras
from aed.patchstore import PatchStore
from aed.splits import Split
from aed.training.augment import ClipFrames, augment_patches, mixup
from aed.training.fit import (
    FitData,
    FitPlan,
    Selection,
    ValidationSet,
    kd_loss,
    one_hot,
    train_on_cache,
    validation_row,
)
from aed.training.network import SplitNetwork, build_split_network
from aed.training.params import TrainParams
from aed.training.teacher import check_teacher_given, load_teacher, soften

log = logging.getLogger(__name__)

# The head is one dense layer: a step costs less than the call into TensorFlow that runs it, so the head phase
# runs this many batches per call (bench/head_steps.py). The updates are the same: bit-identical weights (a test
# checks). Fine-tuning keeps one batch per call: there the convolutions dominate, and in a trial 8 or 32 per call
# gave the same weights but no faster epochs.
HEAD_STEPS_PER_CALL = 8


@dataclass(frozen=True)
class SplitResult:
    """One split's kept model, the figures of its kept epoch, and its whole history."""

    split: str
    model: keras.Model
    best_epoch: int
    best_phase: str
    val_accuracy: float
    val_clip_accuracy: float
    history: list[dict]
    timings: dict[str, float] = field(default_factory=dict)
    distilled: bool = False
    head_epochs: int = 0  # head epochs of the kept model (fine-tuning starts from the best head epoch)
    fine_tune_epochs: int = 0  # fine-tuning epochs of the kept model (0: the head-only model was kept)
    refit: bool = False  # the returned model was retrained on train + validation clips for those epochs


@dataclass(frozen=True)
class ModelSource:
    """Where the backbone comes from (YAMNet-1024: an optional float yamnet.h5 with its pinned sha256)."""

    pretrained: bool = True
    yamnet_h5: Path | None = None
    yamnet_h5_sha256: str | None = None


@dataclass(frozen=True)
class SplitData:
    """A split's patches as training reads them: the training part in a fixed shuffled order (its index rows
    too: time shifts re-cut patches within their clip), and the validation part."""

    train_rows: pd.DataFrame
    train_patches: np.ndarray
    train_labels: np.ndarray
    val: ValidationSet


@dataclass(frozen=True)
class FeatureCache:
    """The frozen backbone's outputs, computed once per split for every augmented copy: the head's inputs
    (embeddings) and, when the last blocks are fine-tuned, those blocks' inputs (features); with each copy's
    targets. Without fine-tuning the embeddings are the features and `features` is empty."""

    embeddings: list[np.ndarray]
    features: list[np.ndarray]
    targets: list[np.ndarray]
    labels: np.ndarray
    val_embeddings: ValidationSet
    val_features: ValidationSet

    def fit_data(self, inputs: list[np.ndarray], val: ValidationSet) -> FitData:
        return FitData(inputs.__getitem__, len(self.targets), self.labels, val, self.targets.__getitem__)


def _seed_for(params: TrainParams, split: Split) -> int:
    return params.seed + (split.test_fold or 0) * 1000 + (7 if split.name == FINAL_SPLIT else 0)


def train_split(
    store: PatchStore,
    split: Split,
    model_name: str,
    params: TrainParams,
    source: ModelSource = ModelSource(),
    teacher_dir: Path | None = None,
) -> SplitResult:
    """Train on the split's training clips, selecting epochs on its validation clips. With train.refit, then
    retrain from the same start on training + validation clips for the selected numbers of epochs: every
    non-test clip is used, and the test clips stay unseen. `teacher_dir` is the train output of the model that
    params.teacher names (required then, refused otherwise)."""
    params.validate()
    check_teacher_given(params, model_name, teacher_dir)
    selected = _train_once(store, split, model_name, params, source, teacher_dir)
    if not params.refit or not split.val_clips:
        return selected
    return _refit(store, split, selected, model_name, params, source, teacher_dir)


def _refit(
    store: PatchStore,
    split: Split,
    selected: SplitResult,
    model_name: str,
    params: TrainParams,
    source: ModelSource,
    teacher_dir: Path | None,
) -> SplitResult:
    """Retrain on train + validation clips for the selected epochs, from the same seed as the selection run."""
    started = time.perf_counter()
    whole = Split(split.name, split.test_fold, split.train_clips + split.val_clips, (), split.test_clips)
    refit_params = dataclasses.replace(
        params,
        epochs=selected.head_epochs,
        fine_tune_epochs=selected.fine_tune_epochs,
        fine_tune_blocks=params.fine_tune_blocks if selected.fine_tune_epochs else 0,
        early_stopping_patience=0,
    )
    refitted = _train_once(
        store, whole, model_name, refit_params, source, teacher_dir, _seed_for(params, split),
        f"{model_name} {split.name} refit",
    )  # fmt: skip
    offset = len(selected.history)
    refit_history = [
        {**row, "phase": f"refit_{row['phase']}", "epoch": offset + index + 1}
        for index, row in enumerate(refitted.history)
    ]
    timings = {**selected.timings, "refit_s": time.perf_counter() - started}
    return dataclasses.replace(
        selected, model=refitted.model, history=selected.history + refit_history, timings=timings, refit=True
    )


def _train_once(
    store: PatchStore,
    split: Split,
    model_name: str,
    params: TrainParams,
    source: ModelSource,
    teacher_dir: Path | None,
    seed: int | None = None,
    label: str | None = None,
) -> SplitResult:
    """Seed, build, load, then (cached) the backbone's outputs, the head, and optionally the last blocks.
    `label` names the run in the progress output (default: the model and split)."""
    label = label or f"{model_name} {split.name}"
    rng = _seed_everything(_seed_for(params, split) if seed is None else seed)
    n_classes = len(store.class_names)
    timings: dict[str, float] = {}
    with _timed(timings, "load_s"):
        net = _build_network(model_name, n_classes, params, source)
        data = load_split(store, split, rng)
    if not params.embedding_cache:
        return _train_end_to_end(net, data, params, split.name, rng, timings, label)
    teacher = load_teacher(Path(teacher_dir), split) if teacher_dir is not None else None
    with _timed(timings, "cache_s"):
        cache = cache_features(net, data, params, rng, teacher, n_classes)
    loss = _loss(params, teacher is not None, n_classes)
    with _timed(timings, "head_s"):
        head = _fit_head(net, cache, params, rng, loss, label)
    tail = None
    if net.trainable_blocks and params.fine_tune_epochs:
        with _timed(timings, "fine_tune_s"):
            cache.embeddings.clear()  # the head is fitted: free its inputs before fine-tuning
            tail = _fine_tune(net, cache, head, params, rng, loss, label)
    return _kept_result(split.name, net, head, tail, timings, distilled=teacher is not None)


def _seed_everything(seed: int) -> np.random.Generator:
    """Keras' global seed (weights, dropout) first, then the generator of the shuffles and augmentations."""
    keras.utils.set_random_seed(seed)
    return np.random.default_rng(seed)


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - started


def _build_network(model_name: str, n_classes: int, params: TrainParams, source: ModelSource) -> SplitNetwork:
    return build_split_network(
        model_name,
        n_classes,
        params.fine_tune_blocks,
        params.dropout,
        params.hidden_units,
        source.pretrained,
        source.yamnet_h5,
        source.yamnet_h5_sha256,
    )


def load_split(store: PatchStore, split: Split, rng: np.random.Generator) -> SplitData:
    """The split's patches. The training patches are shuffled once (a fixed order from `rng`), so that batches
    of the per-batch volume augmentation mix clips and classes."""
    train_rows, val_rows = split.rows(store.index, "train"), split.rows(store.index, "val")
    train_rows = train_rows.iloc[rng.permutation(len(train_rows))]
    train_patches = store.patches(train_rows)
    train_labels = store.labels(train_rows)
    val = ValidationSet(store.patches(val_rows), store.labels(val_rows), val_rows["clip_id"].to_numpy())
    return SplitData(train_rows, train_patches, train_labels, val)


def cache_features(
    net: SplitNetwork,
    data: SplitData,
    params: TrainParams,
    rng: np.random.Generator,
    teacher: keras.Model | None,
    n_classes: int,
) -> FeatureCache:
    """Augment the training patches into K copies (K = train.augment_copies, 1 without augmentation), each with
    its targets, and run the frozen part of the backbone on them and on the validation patches once."""
    hard_targets = one_hot(data.train_labels, n_classes)
    n_copies = params.augment_copies if params.augment else 1
    frames = None
    if params.augment and params.time_shift:
        rows = data.train_rows
        frames = ClipFrames(data.train_patches, rows["clip_id"].to_numpy(), rows["patch"].to_numpy())
    clean_teacher = None
    if teacher is not None and not params.teacher_on_augmented:
        clean_teacher = predict_keras(teacher, data.train_patches, 128)
    features, targets = [], []
    for copy in range(n_copies):
        patches = frames.shifted(params.time_shift, rng) if frames is not None else data.train_patches
        patches, copy_targets = training_copy(patches, hard_targets, params, rng, teacher, clean_teacher)
        targets.append(copy_targets)
        features.append(predict_keras(net.prefix, patches, 128))
        log.debug("cached copy %d/%d", copy + 1, n_copies)
    return _embed(net, features, targets, data)


def _embed(
    net: SplitNetwork, features: list[np.ndarray], targets: list[np.ndarray], data: SplitData
) -> FeatureCache:
    """The head's inputs: the features themselves with a frozen backbone, else the trainable blocks' outputs
    (the blocks are frozen during the head phase, so they are computed once)."""
    val = data.val
    val_features = predict_keras(net.prefix, val.x, 128)
    fine_tuning = bool(net.trainable_blocks)
    embeddings = [predict_keras(net.to_embedding, f, 512) for f in features] if fine_tuning else features
    val_embeddings = predict_keras(net.to_embedding, val_features, 512) if fine_tuning else val_features
    return FeatureCache(
        embeddings=embeddings,
        features=features if fine_tuning else [],  # the embeddings are the features; nothing else to keep
        targets=targets,
        labels=data.train_labels,
        val_embeddings=ValidationSet(val_embeddings, val.labels, val.clips),
        val_features=ValidationSet(val_features, val.labels, val.clips),
    )


def _loss(params: TrainParams, distilled: bool, n_classes: int) -> str | Callable:
    if distilled and params.distillation == "kd":
        return kd_loss(n_classes, params.teacher_weight, params.teacher_temperature)
    return "categorical_crossentropy"


def _fit_head(
    net: SplitNetwork,
    cache: FeatureCache,
    params: TrainParams,
    rng: np.random.Generator,
    loss: str | Callable,
    label: str = "",
) -> Selection:
    """The head on the cached embeddings; the network keeps its best (or averaged) weights."""
    plan = FitPlan(
        "head",
        params.epochs,
        params.learning_rate,
        loss=loss,
        label=label,
        steps_per_execution=HEAD_STEPS_PER_CALL,
    )
    data = cache.fit_data(cache.embeddings, cache.val_embeddings)
    head = train_on_cache(net.head, data, plan, params, rng, Selection())
    net.head.set_weights(head.weights)
    return head


def _fine_tune(
    net: SplitNetwork,
    cache: FeatureCache,
    head: Selection,
    params: TrainParams,
    rng: np.random.Generator,
    loss: str | Callable,
    label: str = "",
) -> Selection:
    """The last blocks and the head on the cached features, after the head phase. Its epochs are numbered after
    the head's; the head-only result is its epoch 0, so fine-tuning is kept only if validation improves."""
    head_last_epoch = head.history[-1]["epoch"]
    net.set_fine_tuning(True)
    selection = Selection()
    selection.offer(net.tail, validation_row(net.tail, "fine_tune", head.epoch, cache.val_features))
    selection.history.clear()
    plan = FitPlan(
        "fine_tune", params.fine_tune_epochs, params.fine_tune_learning_rate, head_last_epoch, loss, label
    )
    data = cache.fit_data(cache.features, cache.val_features)
    selection = train_on_cache(net.tail, data, plan, params, rng, selection)
    net.tail.set_weights(selection.weights)
    net.set_fine_tuning(False)
    return selection


def _kept_result(
    split_name: str,
    net: SplitNetwork,
    head: Selection,
    tail: Selection | None,
    timings: dict[str, float],
    distilled: bool,
) -> SplitResult:
    """The kept model's figures: fine-tuning's if it ran and moved the selection, else the head's."""
    history, best, best_phase, fine_tune_epochs = head.history, head, "head", 0
    if tail is not None:
        history = history + tail.history
        if tail.epoch != head.epoch:
            best, best_phase = tail, "fine_tune"
            fine_tune_epochs = tail.epoch - head.history[-1]["epoch"]
    kept = _best_row(history, best.epoch)
    return SplitResult(
        split_name,
        net.full,
        best.epoch,
        best_phase,
        kept["val_accuracy"],
        kept["val_clip_accuracy"],
        history,
        timings,
        distilled,
        head_epochs=head.epoch,
        fine_tune_epochs=fine_tune_epochs,
    )


def training_copy(
    patches: np.ndarray,
    hard_targets: np.ndarray,
    params: TrainParams,
    rng: np.random.Generator,
    teacher: keras.Model | None = None,
    clean_teacher: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One augmented copy of the training patches and its targets: noise and volume (and masks), then input
    mixup, then distillation: (1 - w) * labels + w * the teacher's softmax, on this very copy when
    teacher_on_augmented (consistent targets for what the student sees), else `clean_teacher` (clean patches).
    With `distillation: kd` the targets are [labels | the teacher at T] (2 x classes columns) for kd_loss."""
    targets = hard_targets
    if params.augment:
        patches = augment_patches(patches, params, rng)
        if params.input_mixup_alpha > 0:
            patches, targets = mixup(patches, hard_targets, params.input_mixup_alpha, rng)
    if teacher is not None:
        taught = predict_keras(teacher, patches, 128) if params.teacher_on_augmented else clean_teacher
        taught = soften(taught, params.teacher_temperature)
        if params.distillation == "kd":  # labels and teacher side by side for kd_loss
            targets = np.concatenate([targets, taught], axis=1)
        else:
            targets = (1.0 - params.teacher_weight) * targets + params.teacher_weight * taught
    return patches, targets.astype(np.float32)


def _best_row(history: list[dict], epoch: int) -> dict:
    rows = [row for row in history if row["epoch"] == epoch]
    return rows[-1] if rows else {"val_accuracy": float("nan"), "val_clip_accuracy": float("nan")}


class VolumeScale(keras.layers.Layer):
    """The reference's volume augmentation: one factor U(low, high) per batch multiplies the log-mel values."""

    def __init__(self, low: float, high: float, seed: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.low, self.high = low, high
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        if not training:
            return inputs
        factor = keras.random.uniform((), self.low, self.high, seed=self.generator)
        return inputs * factor


def _train_end_to_end(
    net: SplitNetwork,
    data: SplitData,
    params: TrainParams,
    split_name: str,
    rng: np.random.Generator,
    timings: dict[str, float],
    label: str = "",
) -> SplitResult:
    """The reference's way, kept for the benchmark: augmentation layers in front of the frozen network, the
    backbone re-run on every patch in every epoch. Same model and selection rule; no fine-tuning and no teacher
    (TrainParams.validate refuses both)."""
    with _timed(timings, "end_to_end_s"):
        trainer = _augmenting_trainer(net, params)
        fit_data = FitData(lambda _k: data.train_patches, 1, data.train_labels, data.val)
        plan = FitPlan("end_to_end", params.epochs, params.learning_rate, label=label)
        selection = train_on_cache(trainer, fit_data, plan, params, rng, Selection())
        trainer.set_weights(selection.weights)
    row = _best_row(selection.history, selection.epoch)
    return SplitResult(
        split_name,
        net.full,
        selection.epoch,
        "head",
        row["val_accuracy"],
        row["val_clip_accuracy"],
        selection.history,
        timings,
    )


def _augmenting_trainer(net: SplitNetwork, params: TrainParams) -> keras.Model:
    """The whole network behind the reference's augmentation layers (active in training only)."""
    patch = keras.Input(shape=net.full.input_shape[1:], name="patch")
    x = (
        keras.layers.GaussianNoise(params.gaussian_noise, seed=params.seed)(patch)
        if params.augment
        else patch
    )
    if params.augment:
        x = VolumeScale(params.volume_min, params.volume_max, params.seed)(x)
    return keras.Model(patch, net.full(x))
