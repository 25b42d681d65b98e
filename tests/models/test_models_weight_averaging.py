"""train.average_last_epochs: a phase keeps the mean of its last N epochs' weights instead of its best epoch."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from aed.params import ParamsError
from aed.training import TrainParams
from aed.training.fit import FitData, FitPlan, Selection, ValidationSet, train_on_cache


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), 20)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    x[np.arange(60), labels] += 3.0
    return x, labels


def _recording_model(snapshots: list[list[np.ndarray]]) -> keras.Model:
    """A softmax classifier whose fit() records the weights after every epoch."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3, activation="softmax")])
    fit = model.fit

    def recording_fit(*args, **kwargs):
        history = fit(*args, **kwargs)
        snapshots.append(model.get_weights())
        return history

    model.fit = recording_fit
    return model


def _train(model: keras.Model, params: TrainParams, selection: Selection, epochs: int = 5) -> Selection:
    x, labels = _data()
    clips = np.array([f"clip-{i // 2}" for i in range(len(labels))])
    data = FitData(lambda _k: x, 1, labels, ValidationSet(x, labels, clips))
    return train_on_cache(
        model, data, FitPlan("head", epochs, 0.05), params, np.random.default_rng(0), selection
    )


def test_the_kept_weights_are_the_mean_of_the_last_epochs() -> None:
    snapshots: list[list[np.ndarray]] = []
    model = _recording_model(snapshots)
    selection = _train(model, TrainParams(average_last_epochs=3), Selection())

    assert len(snapshots) == 5
    expected = [np.mean([s[i] for s in snapshots[2:]], axis=0) for i in range(len(snapshots[0]))]
    for kept, mean, last in zip(selection.weights, expected, snapshots[-1], strict=True):
        np.testing.assert_allclose(kept, mean, rtol=1e-6, atol=1e-7)
        assert not np.allclose(kept, last)  # not simply the last epoch
    for kept, current in zip(selection.weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(kept, current)
    # Five epoch rows (not offered), then the average: the phase's one candidate, numbered as its last epoch.
    assert [row["phase"] for row in selection.history] == ["head"] * 5 + ["head_average"]
    assert selection.epoch == 5
    assert selection.history[-1]["val_accuracy"] == selection.key[0]


def test_without_averaging_the_best_epoch_is_kept() -> None:
    snapshots: list[list[np.ndarray]] = []
    selection = _train(_recording_model(snapshots), TrainParams(average_last_epochs=0), Selection())
    assert [row["phase"] for row in selection.history] == ["head"] * 5
    best = selection.epoch
    for kept, snapshot in zip(selection.weights, snapshots[best - 1], strict=True):
        np.testing.assert_array_equal(kept, snapshot)


def test_the_average_does_not_replace_a_better_earlier_candidate() -> None:
    """Fine-tuning starts from the head-only model offered as its epoch 0: the average must beat it on
    validation to be kept."""
    model = _recording_model([])
    selection = Selection()
    unbeatable = [np.full_like(w, 7.0) for w in model.get_weights()]
    selection.weights, selection.key, selection.epoch = unbeatable, (1.01, 0.0), 50
    kept = _train(model, TrainParams(average_last_epochs=2), selection)
    assert kept.epoch == 50
    assert all(np.all(w == 7.0) for w in kept.weights)
    assert kept.history[-1]["phase"] == "head_average"


def test_averaging_and_early_stopping_exclude_each_other() -> None:
    params = dataclasses.replace(TrainParams(), average_last_epochs=5, early_stopping_patience=3)
    with pytest.raises(ParamsError, match="average_last_epochs"):
        params.validate()
