"""A background class for any dataset layout: non-target audio the model learns as "no event".

Without one, a model only knows its target classes and names one of them for any sound (rain became crying_baby,
a clock tick became dog). FSD50K has its `other` class (aed.datasets.fsd50k); any layout gets one here, from

- classes of the data named as background (`validate.background`, e.g. rain and clock_tick beside crying_baby,
  dog and rooster of ESC-10), and/or
- a folder of non-target audio inside the raw folder (`validate.background_dir`); each subfolder is one source,
  files directly in it are one more.

It is sampled as the FSD50K `other` class is: a fixed number of clips from each source, `validate.
background_samples` (None: a mean target class's clips over the number of sources, rounded up, so the class is
about as large as the others), drawn under the same fixed seed; with replacement only where a source has fewer
clips than that. A clip drawn twice gets distinct ids; a clip keeps its fold, so cross-validation never trains on
a test fold's clip.
Folder files, which have no fold, are spread over the dataset's folds in file order.

Labels of the data that are neither classes nor background are left out (and counted) once a background is
configured: the model learns the classes and "no event" only. The class is called `background` and must be listed
in `validate.classes` (the model's outputs, sorted): detect and the firmware constants treat it, and FSD50K's
`other`, as "no event" (background_classes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from aed.datasets.errors import DatasetError
from aed.datasets.fsd50k import SEED
from aed.datasets.layouts import AUDIO_EXTENSIONS
from aed.labels import BACKGROUND_LABEL


@dataclass(frozen=True)
class BackgroundPlan:
    """The validated manifest's background: what was drawn from where, and what was left out."""

    manifest: pd.DataFrame
    drawn: dict[str, int]  # source (a label or a folder) -> clips drawn from it
    left_out: dict[str, int]  # label -> clips neither a class nor background

    def summary(self) -> dict:
        return {"label": BACKGROUND_LABEL, "drawn": self.drawn, "left_out": self.left_out,
                "clips": int(sum(self.drawn.values()))}  # fmt: skip


def add_background(
    manifest: pd.DataFrame,
    raw_dir: Path,
    classes: Sequence[str],
    labels: Sequence[str],
    folder: str | None,
    samples: int | None,
    describe: Callable[[Path, dict], dict],
) -> BackgroundPlan:
    """The manifest with its background clips (relabelled `background`), the other labels left out.

    describe(raw_dir, row) adds a folder file's facts (duration, rate, channels, sha256) as ingest does."""
    _check_settings(manifest, classes, labels)
    sources = {label: manifest[manifest["label"] == label] for label in labels}
    if folder:
        sources.update(_folder_sources(manifest, Path(raw_dir), folder, describe))
    targets = manifest[manifest["label"].isin(classes)]
    n_targets = max(1, len(set(classes) - {BACKGROUND_LABEL}))
    count = samples or max(1, -(-len(targets) // (n_targets * max(1, len(sources)))))
    drawn = [_draw(rows, count) for rows in sources.values()]
    kept = pd.concat([targets, *drawn], ignore_index=True) if drawn else targets.reset_index(drop=True)
    others = manifest[~manifest["label"].isin([*classes, *labels])]
    return BackgroundPlan(
        manifest=kept[list(manifest.columns)],
        drawn={name: count for name in sources},
        left_out={str(k): int(v) for k, v in others["label"].value_counts().sort_index().items()},
    )


def _check_settings(manifest: pd.DataFrame, classes: Sequence[str], labels: Sequence[str]) -> None:
    if BACKGROUND_LABEL not in classes:
        raise DatasetError(
            f"validate.classes: add {BACKGROUND_LABEL!r} to it: validate.background / background_dir make a "
            "background class, which the model must have as an output"
        )
    both = sorted(set(labels) & set(classes))
    if both:
        raise DatasetError(
            f"validate.background: {both} are also in validate.classes; a label is one or the other"
        )
    found = set(manifest["label"].astype(str))
    absent = [label for label in labels if label not in found]
    if absent:
        raise DatasetError(
            f"validate.background: {absent} have no clips in the data (labels: {sorted(found)})"
        )


def _folder_sources(
    manifest: pd.DataFrame, raw_dir: Path, folder: str, describe: Callable[[Path, dict], dict]
) -> dict[str, pd.DataFrame]:
    """{source name: manifest rows} of the audio files under raw_dir/folder, one source per subfolder."""
    root = raw_dir / folder
    relative = Path(folder)
    if (
        relative.is_absolute()
        or ".." in relative.parts
        or not root.resolve().is_relative_to(raw_dir.resolve())
    ):
        raise DatasetError(
            f"validate.background_dir: {folder!r} must be a folder inside the raw folder {raw_dir}"
        )
    if not root.is_dir():
        raise DatasetError(f"validate.background_dir: {root} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise DatasetError(f"validate.background_dir: {root} holds no audio ({', '.join(AUDIO_EXTENSIONS)})")
    folds = sorted(int(f) for f in manifest["fold"].unique() if int(f) > 0) or [0]
    splits = sorted(s for s in manifest["split"].fillna("").astype(str).unique() if s)
    sources: dict[str, list[dict]] = {}
    for number, path in enumerate(files):
        inside = path.relative_to(root)
        name = f"{folder}/{inside.parts[0]}" if len(inside.parts) > 1 else folder
        row = {"clip_id": f"bg-{path.relative_to(raw_dir).with_suffix('').as_posix().replace('/', '-')}",
               "path": path.relative_to(raw_dir).as_posix(), "label": BACKGROUND_LABEL,
               "fold": folds[number % len(folds)], "split": splits[number % len(splits)] if splits else ""}  # fmt: skip
        sources.setdefault(name, []).append(describe(raw_dir, row))
    return {name: pd.DataFrame(rows, columns=manifest.columns) for name, rows in sources.items()}


def _draw(rows: pd.DataFrame, count: int) -> pd.DataFrame:
    """`count` clips of one source (seeded; with replacement only when it has fewer), relabelled; each draw has
    its own clip id."""
    sampled = rows.sample(n=count, replace=count > len(rows), random_state=SEED).reset_index(drop=True)
    ids = [f"{clip}-bg{number}" for number, clip in enumerate(sampled["clip_id"].astype(str))]
    return sampled.assign(clip_id=ids, label=BACKGROUND_LABEL)
