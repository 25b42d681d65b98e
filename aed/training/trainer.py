"""Train one model on one split: cache features, train the head, optionally fine-tune the last blocks."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from aed.models.runners import load_keras, predict_keras
from aed.patchstore import PatchStore
from aed.splits import Split
from aed.training.augment import ClipFrames, augment_patches, mixup
from aed.training.fit import Selection, kd_loss, one_hot, train_on_cache, validation_row
from aed.training.network import SplitNetwork, build_split_network
from aed.training.params import TrainParams

log = logging.getLogger(__name__)


@dataclass
class SplitResult:
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


def _seed_for(params: TrainParams, split: Split) -> int:
    return params.seed + (split.test_fold or 0) * 1000 + (7 if split.name == "final" else 0)


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
        store, whole, model_name, refit_params, source, teacher_dir, seed=_seed_for(params, split)
    )
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
) -> SplitResult:
    seed = _seed_for(params, split) if seed is None else seed
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    net = build_split_network(
        model_name,
        len(store.class_names),
        params.fine_tune_blocks,
        params.dropout,
        params.hidden_units,
        source.pretrained,
        source.yamnet_h5,
        source.yamnet_h5_sha256,
    )
    train_rows, val_rows = split.rows(store.index, "train"), split.rows(store.index, "val")
    # Fixed shuffle of the training patches: batches of the volume augmentation mix clips and classes.
    train_rows = train_rows.iloc[rng.permutation(len(train_rows))]
    train_patches = store.patches(train_rows)
    train_labels = store.labels(train_rows)
    val_patches, val_labels = store.patches(val_rows), store.labels(val_rows)
    val_clips = val_rows["clip_id"].to_numpy()
    timings["load_s"] = time.perf_counter() - started

    if not params.embedding_cache:
        return _train_end_to_end(
            net, train_patches, train_labels, val_patches, val_labels, val_clips, params, split, rng, timings
        )

    teacher = load_teacher(Path(teacher_dir), split) if teacher_dir is not None else None
    hard_targets = one_hot(train_labels, len(store.class_names))
    started = time.perf_counter()
    n_copies = params.augment_copies if params.augment else 1
    frames = None
    if params.augment and params.time_shift:
        frames = ClipFrames(train_patches, train_rows["clip_id"].to_numpy(), train_rows["patch"].to_numpy())
    features, copy_targets = [], []
    clean_teacher = None
    if teacher is not None and not params.teacher_on_augmented:
        clean_teacher = predict_keras(teacher, train_patches, 128)
    for copy in range(n_copies):
        patches = frames.shifted(params.time_shift, rng) if frames is not None else train_patches
        patches, targets = training_copy(patches, hard_targets, params, rng, teacher, clean_teacher)
        copy_targets.append(targets)
        features.append(predict_keras(net.prefix, patches, 128))
        log.debug("%s %s: cached copy %d/%d", model_name, split.name, copy + 1, n_copies)
    val_features = predict_keras(net.prefix, val_patches, 128)
    fine_tuning = bool(net.trainable_blocks)
    embeddings = [predict_keras(net.to_embedding, f, 512) for f in features] if fine_tuning else features
    val_embeddings = predict_keras(net.to_embedding, val_features, 512) if fine_tuning else val_features
    if not fine_tuning:
        features = []  # the embeddings are the features; nothing else to keep
    timings["cache_s"] = time.perf_counter() - started
    distilled = teacher is not None
    soft_targets = copy_targets.__getitem__
    loss = (
        kd_loss(len(store.class_names), params.teacher_weight, params.teacher_temperature)
        if distilled and params.distillation == "kd"
        else "categorical_crossentropy"
    )
    started = time.perf_counter()
    head_selection = train_on_cache(
        net.head,
        lambda k: embeddings[k],
        n_copies,
        train_labels,
        val_embeddings,
        val_labels,
        val_clips,
        params,
        params.epochs,
        params.learning_rate,
        "head",
        rng,
        Selection(),
        soft_targets=soft_targets,
        loss=loss,
    )
    net.head.set_weights(head_selection.weights)
    history, best = head_selection.history, head_selection
    best_phase, fine_tune_epochs = "head", 0
    timings["head_s"] = time.perf_counter() - started

    if fine_tuning and params.fine_tune_epochs:
        started = time.perf_counter()
        head_last_epoch = head_selection.history[-1]["epoch"]  # fine-tuning's epochs are numbered after it
        del embeddings
        net.set_fine_tuning(True)
        tail_selection = Selection()
        # The head-only result is the fine-tuning's epoch 0: fine-tuning is kept only if validation improves.
        tail_selection.offer(
            net.tail,
            validation_row(net.tail, "fine_tune", head_selection.epoch, val_features, val_labels, val_clips),
        )
        tail_selection.history.clear()
        tail_selection = train_on_cache(
            net.tail,
            lambda k: features[k],
            n_copies,
            train_labels,
            val_features,
            val_labels,
            val_clips,
            params,
            params.fine_tune_epochs,
            params.fine_tune_learning_rate,
            "fine_tune",
            rng,
            tail_selection,
            epoch_offset=head_last_epoch,
            soft_targets=soft_targets,
            loss=loss,
        )
        net.tail.set_weights(tail_selection.weights)
        net.set_fine_tuning(False)
        history = history + tail_selection.history
        if tail_selection.epoch != head_selection.epoch:
            best, best_phase = tail_selection, "fine_tune"
            fine_tune_epochs = tail_selection.epoch - head_last_epoch
        timings["fine_tune_s"] = time.perf_counter() - started
    kept = _best_row(history, best.epoch)
    return SplitResult(
        split.name,
        net.full,
        best.epoch,
        best_phase,
        kept["val_accuracy"],
        kept["val_clip_accuracy"],
        history,
        timings,
        distilled,
        head_epochs=head_selection.epoch,
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
            f"pass {params.teacher}'s train output (aed train --teacher DIR, e.g. models/{params.teacher}/float)"
        )
    if not params.teacher and teacher_dir is not None:
        raise ValueError(
            f"train: a teacher folder ({teacher_dir}) was given but train.teacher is null for {model_name}"
        )


def check_teacher_dir(teacher_dir: Path, teacher: str, split_names: list[str]) -> None:
    """Before any training: `teacher_dir` is `teacher`'s train output and has a model for every split."""
    import json

    layout_path = Path(teacher_dir) / "splits.json"
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
    import json

    layout_path = teacher_dir / "splits.json"
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
    return load_keras(teacher_dir / split.name / "model.keras")


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
    train_patches,
    train_labels,
    val_patches,
    val_labels,
    val_clips,
    params,
    split,
    rng,
    timings,
) -> SplitResult:
    """The reference's way, kept for the benchmark: augmentation layers in front of the frozen network, the
    backbone re-run on every patch in every epoch. Same model and selection rule; no fine-tuning."""
    if net.trainable_blocks:
        raise ValueError(
            "train.embedding_cache: false supports the frozen backbone only (fine_tune_blocks: 0)"
        )
    started = time.perf_counter()
    patch = keras.Input(shape=net.full.input_shape[1:], name="patch")
    x = (
        keras.layers.GaussianNoise(params.gaussian_noise, seed=params.seed)(patch)
        if params.augment
        else patch
    )
    if params.augment:
        x = VolumeScale(params.volume_min, params.volume_max, params.seed)(x)
    trainer = keras.Model(patch, net.full(x))
    selection = train_on_cache(
        trainer,
        lambda _k: train_patches,
        1,
        train_labels,
        val_patches,
        val_labels,
        val_clips,
        params,
        params.epochs,
        params.learning_rate,
        "end_to_end",
        rng,
        Selection(),
    )
    trainer.set_weights(selection.weights)
    timings["end_to_end_s"] = time.perf_counter() - started
    row = _best_row(selection.history, selection.epoch)
    return SplitResult(
        split.name,
        net.full,
        selection.epoch,
        "head",
        row["val_accuracy"],
        row["val_clip_accuracy"],
        selection.history,
        timings,
    )
