"""train.jobs 0 (the default) chooses the split workers from the work: two from the smallest dataset measured
(bench/split_jobs.py: 137 training patches per split already trained 1.27x faster on a quiet 2-core machine), one
process below it, where the work is seconds and the workers' start-up unmeasured."""

from __future__ import annotations

from pathlib import Path

import pytest

from aed.patchstore import load_patch_store
from aed.training import TrainParams
from aed.training.jobs import (
    AUTO_MIN_TRAIN_PATCHES,
    choose_workers,
    largest_training_part,
    plan_splits,
)
from tests.models.conftest import synthetic_store


def test_the_default_is_chosen_from_the_work() -> None:
    assert TrainParams().jobs == 0
    small, large = AUTO_MIN_TRAIN_PATCHES - 1, AUTO_MIN_TRAIN_PATCHES
    assert choose_workers(0, 6, small, 2)[0] == 1
    assert choose_workers(0, 6, large, 2) == (2, f"auto: {large} training patches per split >= {large}")
    assert choose_workers(0, 6, 10 * large, 16)[0] == 2  # measured on 2 cores: no more than 2 unasked
    assert choose_workers(0, 1, 10 * large, 2)[0] == 1  # one split: nothing to share
    assert choose_workers(0, 6, 10 * large, 1)[0] == 1  # one core


@pytest.mark.parametrize(("requested", "expected"), [(1, 1), (2, 2), (4, 3), (64, 3)])
def test_a_set_jobs_value_is_kept_up_to_the_splits(requested: int, expected: int) -> None:
    assert choose_workers(requested, 3, 1, 2) == (expected, f"train.jobs {requested}")


def test_the_work_is_the_largest_split_s_training_patches(tmp_path: Path) -> None:
    store = load_patch_store(synthetic_store(tmp_path / "p", clips_per_class_per_fold=2, patches=2))
    splits = plan_splits(store, TrainParams(folds=[1, 2], validation_fraction=0.25))
    counts = [len(split.rows(store.index, "train")) for split in splits]
    assert largest_training_part(store, splits) == max(counts) > 0
    assert len(splits) == 3 and counts[-1] == max(counts)  # the final model trains on the most clips
