"""Clip-level train / validation / test splits over a patch index, with leakage checks.

- `folds`: K-fold cross-validation over the index's `fold` column (ESC-10: 5 folds). For each test fold, the
  other folds train; a stratified validation part of those training clips selects the epoch. The test fold is
  never seen before the final evaluation.
- `random`: a stratified, seeded clip split as the reference's published numbers (sklearn train_test_split,
  random_state 120), plus a validation part of its training clips.
- `predefined`: the index's `split` column (FSD50K: dev trains, eval tests).

The validation part is drawn by recording (ESC-50 clip ids `fold-source-take-target` share a source
recording), so clips cut from one recording never sit on both sides of the train / validation line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from aed.artifacts import FINAL_SPLIT

SplitMode = Literal["folds", "random", "predefined"]
_ESC_CLIP = re.compile(r"^(\d+)-([0-9A-Za-z]+)-[A-Z]+-\d+$")
TRAIN_SPLIT_NAMES = {"train", "dev", "training"}
TEST_SPLIT_NAMES = {"test", "eval", "evaluation", "validation"}


class SplitError(ValueError):
    pass


@dataclass(frozen=True)
class Split:
    name: str  # "fold-3", "random", "predefined"
    test_fold: int | None
    train_clips: tuple[str, ...]
    val_clips: tuple[str, ...]
    test_clips: tuple[str, ...]

    def rows(self, index: pd.DataFrame, part: Literal["train", "val", "test"]) -> pd.DataFrame:
        clips = {"train": self.train_clips, "val": self.val_clips, "test": self.test_clips}[part]
        return index[index["clip_id"].isin(set(clips))]


def recording_of(clip_id: str) -> str:
    """Source recording of an ESC-50 clip id (`1-100032-A-0` -> `1-100032`); other ids are their own group."""
    match = _ESC_CLIP.match(clip_id)
    return f"{match.group(1)}-{match.group(2)}" if match else clip_id


def clip_table(index: pd.DataFrame) -> pd.DataFrame:
    """One row per clip: clip_id, label, fold, split (sorted by clip_id so every split is deterministic)."""
    if index.empty:
        raise SplitError("patch index is empty")
    clips = index.groupby("clip_id", sort=True).agg(label=("label", "first"), fold=("fold", "first"))
    clips["split"] = index.groupby("clip_id", sort=True)["split"].first()
    labels_per_clip = index.groupby("clip_id")["label"].nunique()
    mixed = labels_per_clip[labels_per_clip > 1]
    if len(mixed):
        raise SplitError(f"clips with more than one label in the patch index: {list(mixed.index[:5])}")
    return clips.reset_index()


def validation_part(clips: pd.DataFrame, fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Stratified (per label), recording-grouped split of training clips into (train, validation)."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for _, group in clips.groupby("label", sort=True):
        recordings = sorted(group["clip_id"].map(recording_of).unique())
        rng.shuffle(recordings)
        target = max(1, int(round(fraction * len(group)))) if fraction > 0 else 0
        chosen: set[str] = set()
        taken = 0
        for recording in recordings:
            if taken >= target or len(chosen) == len(recordings) - 1:
                break
            chosen.add(recording)
            taken += int((group["clip_id"].map(recording_of) == recording).sum())
        in_val = group["clip_id"].map(recording_of).isin(chosen)
        val += group.loc[in_val, "clip_id"].tolist()
        train += group.loc[~in_val, "clip_id"].tolist()
    return sorted(train), sorted(val)


def _check(split: Split, clips: pd.DataFrame, class_names: list[str]) -> None:
    sets = {
        "train": set(split.train_clips),
        "validation": set(split.val_clips),
        "test": set(split.test_clips),
    }
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        shared = sets[a] & sets[b]
        if shared:
            raise SplitError(f"{split.name}: clips in both {a} and {b}: {sorted(shared)[:5]}")
    labels = clips.set_index("clip_id")["label"]
    for part, members in sets.items():
        if part == "validation" and not members:
            continue
        if not members:
            raise SplitError(f"{split.name}: the {part} part is empty")
        missing = sorted(set(class_names) - set(labels.loc[sorted(members)]))
        if missing:
            raise SplitError(f"{split.name}: classes {missing} have no clip in the {part} part")


def make_splits(
    index: pd.DataFrame,
    class_names: list[str],
    mode: SplitMode = "folds",
    folds: list[int] | None = None,
    validation_fraction: float = 0.2,
    random_test_size: float = 0.2,
    seed: int = 120,
) -> list[Split]:
    """The list of splits to train and test (one per requested fold in `folds` mode)."""
    clips = clip_table(index)
    splits: list[Split] = []
    if mode == "folds":
        available = sorted(int(f) for f in clips["fold"].dropna().unique())
        wanted = folds or available
        for fold in wanted:
            test = clips[clips["fold"] == fold]
            if test.empty:
                raise SplitError(f"fold {fold} is empty (folds present: {available})")
            rest = clips[clips["fold"] != fold]
            train, val = validation_part(rest, validation_fraction, seed + fold)
            splits.append(
                Split(f"fold-{fold}", fold, tuple(train), tuple(val), tuple(sorted(test["clip_id"])))
            )
    elif mode == "random":
        try:
            rest_ids, test_ids = train_test_split(
                clips["clip_id"], test_size=random_test_size, random_state=seed, stratify=clips["label"]
            )
        except ValueError as error:
            raise SplitError(f"random split impossible: {error}") from error
        train, val = validation_part(clips[clips["clip_id"].isin(set(rest_ids))], validation_fraction, seed)
        splits.append(Split("random", None, tuple(train), tuple(val), tuple(sorted(test_ids))))
    elif mode == "predefined":
        names = clips["split"].str.lower()
        rest = clips[names.isin(TRAIN_SPLIT_NAMES)]
        test = clips[names.isin(TEST_SPLIT_NAMES)]
        train, val = validation_part(rest, validation_fraction, seed)
        splits.append(Split("predefined", None, tuple(train), tuple(val), tuple(sorted(test["clip_id"]))))
    else:
        raise SplitError(f"unknown split mode {mode!r}")
    for split in splits:
        _check(split, clips, class_names)
    return splits


def full_training_split(
    index: pd.DataFrame, class_names: list[str], validation_fraction: float, seed: int
) -> Split:
    """All clips train (with a validation part): the deployable model, which has no held-out test part."""
    clips = clip_table(index)
    train, val = validation_part(clips, validation_fraction, seed)
    split = Split(FINAL_SPLIT, None, tuple(train), tuple(val), ())
    for part, members in (("train", train), ("validation", val)):
        missing = sorted(set(class_names) - set(clips.set_index("clip_id").loc[members, "label"]))
        if missing:
            raise SplitError(f"final: classes {missing} have no clip in the {part} part")
    return split
