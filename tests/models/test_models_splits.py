from __future__ import annotations

import pandas as pd
import pytest

from aed.splits import SplitError, full_training_split, make_splits, recording_of


def _index(n_folds: int = 5, per_class: int = 4, classes: tuple[str, ...] = ("a", "b", "c")) -> pd.DataFrame:
    rows = []
    for fold in range(1, n_folds + 1):
        for label_index, label in enumerate(classes):
            for k in range(per_class):
                # two takes per source recording, as ESC-50 has (A, B)
                clip = f"{fold}-{1000 * fold + 10 * label_index + k // 2}-{'AB'[k % 2]}-{label_index}"
                for patch in range(3):
                    rows.append(
                        {
                            "clip_id": clip,
                            "patch": patch,
                            "label": label,
                            "label_index": label_index,
                            "fold": fold,
                            "split": "train",
                            "shard": 0,
                            "row": len(rows),
                        }
                    )
    return pd.DataFrame(rows)


def test_folds_have_no_leakage() -> None:
    index = _index()
    splits = make_splits(index, ["a", "b", "c"], "folds", validation_fraction=0.25, seed=120)
    assert [s.name for s in splits] == [f"fold-{f}" for f in range(1, 6)]
    clip_fold = index.groupby("clip_id")["fold"].first()
    all_clips = set(index["clip_id"])
    for split in splits:
        train, val, test = set(split.train_clips), set(split.val_clips), set(split.test_clips)
        assert not (train & val) and not (train & test) and not (val & test)
        assert train | val | test == all_clips
        assert set(clip_fold[list(test)]) == {split.test_fold}
        assert split.test_fold not in set(clip_fold[list(train | val)])
        # a source recording never sits on both sides of the train / validation line
        assert not ({recording_of(c) for c in train} & {recording_of(c) for c in val})
        assert len(val) > 0


def test_splits_are_deterministic_and_seeded() -> None:
    index = _index()
    a = make_splits(index, ["a", "b", "c"], "folds", seed=120)
    b = make_splits(index, ["a", "b", "c"], "folds", seed=120)
    c = make_splits(index, ["a", "b", "c"], "folds", seed=7)
    assert a == b
    assert [s.val_clips for s in a] != [s.val_clips for s in c]


def test_fold_subset() -> None:
    splits = make_splits(_index(), ["a", "b", "c"], "folds", folds=[2, 5])
    assert [s.test_fold for s in splits] == [2, 5]


def test_random_split_is_stratified() -> None:
    index = _index(n_folds=5, per_class=8)
    (split,) = make_splits(index, ["a", "b", "c"], "random", random_test_size=0.2, seed=120)
    labels = index.groupby("clip_id")["label"].first()
    test_counts = labels[list(split.test_clips)].value_counts()
    assert set(test_counts) == {8}  # 40 clips per class, 20 % each
    assert not set(split.test_clips) & (set(split.train_clips) | set(split.val_clips))


def test_empty_fold_is_refused() -> None:
    with pytest.raises(SplitError, match="fold 6 is empty"):
        make_splits(_index(), ["a", "b", "c"], "folds", folds=[6])


def test_class_missing_from_a_split_is_refused() -> None:
    index = _index()
    index = index[~((index["fold"] == 3) & (index["label"] == "b"))]
    with pytest.raises(SplitError, match=r"fold-3: classes \['b'\] have no clip in the test part"):
        make_splits(index, ["a", "b", "c"], "folds")


def test_predefined_split_uses_the_split_column() -> None:
    index = _index()
    index.loc[index["fold"] == 5, "split"] = "eval"
    (split,) = make_splits(index, ["a", "b", "c"], "predefined")
    assert set(split.test_clips) == set(index.loc[index["fold"] == 5, "clip_id"])


def test_final_split_uses_every_clip() -> None:
    index = _index()
    split = full_training_split(index, ["a", "b", "c"], 0.2, 120)
    assert set(split.train_clips) | set(split.val_clips) == set(index["clip_id"])
    assert split.test_clips == ()
