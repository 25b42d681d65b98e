"""Training's phases and jobs one by one: the split's data, the feature cache, a phase's fit, the jobs' plan and
the figures they give. A stand-in network (two tiny Keras models) keeps these fast and YAMNet-free."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from aed.params import ParamsError
from aed.patchstore import load_patch_store
from aed.splits import make_splits
from aed.training import TrainParams
from aed.training.fit import FitData, FitPlan, Selection, ValidationSet, train_on_cache
from aed.training.jobs import SplitFigures, model_params, plan_splits, splits_layout
from aed.training.trainer import HEAD_STEPS_PER_CALL, cache_features, load_split
from tests.models.conftest import synthetic_store


def _stand_in_network(trainable_blocks: tuple[int, ...]) -> SimpleNamespace:
    """prefix: patch -> 8 features; to_embedding: features -> 3 values (the fine-tuned blocks' stand-in)."""
    keras.utils.set_random_seed(0)
    pooled = [keras.layers.AveragePooling2D(8), keras.layers.Flatten(), keras.layers.Dense(8)]
    prefix = keras.Sequential([keras.Input((64, 96, 1)), *pooled])
    to_embedding = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    return SimpleNamespace(prefix=prefix, to_embedding=to_embedding, trainable_blocks=trainable_blocks)


@pytest.fixture()
def split_data(tmp_path: Path):
    store = load_patch_store(synthetic_store(tmp_path / "patches"))
    (split,) = make_splits(store.index, store.class_names, "folds", [2], 0.2, 0.2, 120)
    return store, split


def test_the_split_is_loaded_in_one_shuffled_order_fixed_by_the_generator(split_data) -> None:
    store, split = split_data
    first = load_split(store, split, np.random.default_rng(5))
    again = load_split(store, split, np.random.default_rng(5))
    unshuffled = split.rows(store.index, "train")
    assert list(first.train_rows.index) == list(again.train_rows.index)
    assert sorted(first.train_rows.index) == sorted(unshuffled.index)
    assert list(first.train_rows.index) != list(unshuffled.index)
    np.testing.assert_array_equal(first.train_patches, store.patches(first.train_rows))
    np.testing.assert_array_equal(first.train_labels, store.labels(first.train_rows))
    assert set(first.val.clips) == set(split.val_clips) and len(first.val.x) == len(first.val.labels)


@pytest.mark.parametrize("augment, copies", [(True, 3), (False, 1)])
def test_the_cache_holds_one_entry_per_augmented_copy(split_data, augment: bool, copies: int) -> None:
    store, split = split_data
    rng = np.random.default_rng(1)
    data = load_split(store, split, rng)
    params = TrainParams(augment=augment, augment_copies=3)
    net = _stand_in_network(())
    cache = cache_features(net, data, params, rng, None, len(store.class_names))
    assert len(cache.embeddings) == len(cache.targets) == copies
    assert cache.features == []  # frozen backbone: the embeddings are the features, kept once
    clean = net.prefix.predict(data.train_patches, verbose=0)
    if augment:  # noise and volume: the copies differ from the clean patches and from each other
        assert not np.allclose(cache.embeddings[0], clean, atol=1e-3)
        assert not np.allclose(cache.embeddings[0], cache.embeddings[1], atol=1e-3)
    else:
        np.testing.assert_allclose(cache.embeddings[0], clean, atol=1e-5)
    np.testing.assert_array_equal(cache.targets[0], np.eye(3, dtype=np.float32)[data.train_labels])
    np.testing.assert_allclose(cache.val_embeddings.x, net.prefix.predict(data.val.x, verbose=0), atol=1e-5)
    np.testing.assert_array_equal(cache.val_embeddings.clips, data.val.clips)


def test_fine_tuning_caches_the_blocks_inputs_and_their_embeddings(split_data) -> None:
    store, split = split_data
    rng = np.random.default_rng(1)
    data = load_split(store, split, rng)
    net = _stand_in_network((14,))
    cache = cache_features(net, data, TrainParams(augment_copies=2), rng, None, len(store.class_names))
    assert len(cache.features) == len(cache.embeddings) == 2
    for features, embeddings in zip(cache.features, cache.embeddings, strict=True):
        assert features.shape[1] == 8 and embeddings.shape[1] == 3
        np.testing.assert_allclose(embeddings, net.to_embedding.predict(features, verbose=0), atol=1e-5)
    assert cache.val_features.x.shape[1] == 8 and cache.val_embeddings.x.shape[1] == 3
    fit = cache.fit_data(cache.features, cache.val_features)
    assert (
        fit.n_copies == 2
        and fit.train_copy(1) is cache.features[1]
        and fit.soft_targets(1) is cache.targets[1]
    )


def test_a_phase_reads_copy_e_mod_k_and_numbers_its_epochs_after_the_offset() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    x = rng.normal(size=(30, 4)).astype(np.float32)
    read: list[tuple[str, int]] = []

    def copy(k: int) -> np.ndarray:
        read.append(("x", k))
        return x

    def targets(k: int) -> np.ndarray:
        read.append(("y", k))
        return np.eye(3, dtype=np.float32)[labels]

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    val = ValidationSet(x, labels, np.array([f"c{i // 2}" for i in range(30)]))
    data = FitData(copy, 2, labels, val, soft_targets=targets)
    plan = FitPlan("fine_tune", 3, 0.01, epoch_offset=4)
    selection = train_on_cache(model, data, plan, TrainParams(batch_size=8), rng, Selection())
    assert [row["epoch"] for row in selection.history] == [5, 6, 7]
    assert {row["phase"] for row in selection.history} == {"fine_tune"}
    assert read == [("x", 0), ("y", 0), ("x", 1), ("y", 1), ("x", 0), ("y", 0)]
    assert selection.epoch in (5, 6, 7)


def test_the_head_s_batches_per_call_leave_its_weights_bit_identical() -> None:
    """HEAD_STEPS_PER_CALL only saves calls into TensorFlow: every update, and so every figure, is unchanged,
    also when an epoch's batches are not a multiple of it (30 patches in batches of 3: 10 batches per epoch)."""
    labels = np.repeat(np.arange(3), 10)
    x = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    data = FitData(
        lambda _k: x, 1, labels, ValidationSet(x, labels, np.array([f"c{i // 2}" for i in range(30)]))
    )

    def weights(steps: int) -> list[np.ndarray]:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        plan = FitPlan("head", 4, 0.05, steps_per_execution=steps)
        params = TrainParams(batch_size=3, average_last_epochs=0)
        return train_on_cache(model, data, plan, params, np.random.default_rng(0), Selection()).weights

    assert HEAD_STEPS_PER_CALL > 1 and 10 % HEAD_STEPS_PER_CALL  # a partial call ends each epoch
    one, many = weights(1), weights(HEAD_STEPS_PER_CALL)
    assert all(np.array_equal(a, b) for a, b in zip(one, many, strict=True))


BOTH = ["yamnet_256", "yamnet_1024"]


def test_a_model_s_params_are_checked_before_any_data_is_read(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"train: unknown model 'yamnet_512'; known: \['yamnet_1024', 'yamnet_256'\]"
    ):
        model_params(TrainParams(), "yamnet_512", None, BOTH)
    with pytest.raises(ValueError, match="no teacher folder was given"):
        model_params(TrainParams(teacher="yamnet_1024"), "yamnet_256", None, BOTH)
    with pytest.raises(ParamsError, match="cannot teach itself"):
        model_params(TrainParams(teacher="yamnet_256"), "yamnet_256", tmp_path, BOTH)
    overridden = TrainParams(epochs=5, overrides={"yamnet_256": {"epochs": 2}})
    assert model_params(overridden, "yamnet_256", None, BOTH)[0].epochs == 2
    assert model_params(overridden, "yamnet_1024", None, BOTH)[0].epochs == 5


def test_a_teacher_outside_models_names_is_skipped_and_said_so() -> None:
    """yamnet_256 alone in models.names: its configured teacher is not trained, so it trains on the labels alone;
    the teacher among the models but not given stays an error (a wiring mistake)."""
    taught = TrainParams(overrides={"yamnet_256": {"teacher": "yamnet_1024"}})
    own, distillation = model_params(taught, "yamnet_256", None, ["yamnet_256"])
    assert own.teacher is None
    assert distillation.record() == {
        "teacher": "yamnet_1024",
        "used": False,
        "skipped": "its teacher yamnet_1024 is not in models.names ['yamnet_256']",
    }
    with pytest.raises(ValueError, match="or leave yamnet_1024 out of models.names"):
        model_params(taught, "yamnet_256", None, BOTH)
    own, distillation = model_params(TrainParams(), "yamnet_256", None, ["yamnet_256"])
    assert own.teacher is None and distillation.record() == {"teacher": None, "used": False, "skipped": None}


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"fine_tune_blocks": 1}, "train.fine_tune_blocks: must be 0 with train.embedding_cache: false"),
        ({"teacher": "yamnet_1024"}, "train.teacher: distillation needs train.embedding_cache: true"),
    ],
)
def test_the_end_to_end_fit_refuses_what_it_would_silently_skip(setting: dict, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        TrainParams(embedding_cache=False, **setting).validate()
    TrainParams(embedding_cache=True, **setting).validate()


def test_an_end_to_end_teacher_is_refused_by_the_cli_in_one_line(tmp_path: Path, capsys) -> None:
    from components.cli import main

    params = tmp_path / "params.yaml"
    params.write_text("train:\n  embedding_cache: false\n  fine_tune_blocks: 0\n  teacher: yamnet_1024\n")
    store = synthetic_store(tmp_path / "patches")
    argv = ["train", "--params", str(params), "--model-name", "yamnet_256", "--patches", str(store)]
    argv += [
        "--out",
        str(tmp_path / "out"),
        "--reports",
        str(tmp_path / "reports"),
        "--teacher",
        str(tmp_path),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "train.teacher: distillation needs train.embedding_cache: true" in err
    assert not (tmp_path / "out").exists()


def test_the_splits_are_planned_folds_first_then_the_final_model(split_data, tmp_path: Path) -> None:
    store, _ = split_data
    params = TrainParams(folds=[1, 3], final_model=True)
    splits = plan_splits(store, params)
    assert [split.name for split in splits] == ["fold-1", "fold-3", "final"]
    assert splits[-1].test_clips == ()
    layout = json.loads(json.dumps(splits_layout("yamnet_256", params, store.class_names, splits)))
    assert list(layout["splits"]) == ["fold-1", "fold-3", "final"]
    assert layout["splits"]["fold-3"]["test"] == list(splits[1].test_clips)
    assert plan_splits(store, TrainParams(folds=[2], final_model=False))[-1].name == "fold-2"


def test_a_split_s_figures_keep_the_train_json_row_order() -> None:
    figures = SplitFigures(
        4, "head", False, 4, 0, False, None, 0.5, 10, 2, 3, 1.5, {"load_s": 0.1, "head_s": 1.0}
    )
    assert list(figures.row()) == [
        "best_epoch", "best_phase", "distilled", "head_epochs", "fine_tune_epochs", "refit", "val_accuracy",
        "val_clip_accuracy", "n_train_clips", "n_val_clips", "n_test_clips", "seconds", "load_s", "head_s",
    ]  # fmt: skip
    assert json.dumps(figures.row()).count("null") == 1
