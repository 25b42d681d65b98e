"""FSD50K five-class subset as the reference builds it: ontology unsmearing, monolabel filter, optional
`other` class sampled from every remaining category (the reference recipe's FSD50K subset)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from aed.datasets.csv_files import read_csv, require_columns
from aed.datasets.errors import DatasetError
from aed.labels import UNKNOWN_LABEL

FSD50K_CLASSES = ("Crying_and_sobbing", "Glass", "Gunshot_and_gunfire", "Knock", "Speech")
SEED = 120


def load_children(ontology_path: Path) -> dict[str, set[str]]:
    """AudioSet ontology: mid -> set of direct child mids."""
    if not ontology_path.exists():
        raise DatasetError(f"{ontology_path}: AudioSet ontology.json not found (set ingest.fsd50k.ontology)")
    try:
        entries = json.loads(ontology_path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(f"{ontology_path}: not valid JSON ({error})") from error
    return {entry["id"]: set(entry.get("child_ids", [])) for entry in entries}


def unsmear(labels: list[str], mids: list[str], children: dict[str, set[str]]) -> list[str]:
    """Drop every label that has one of its own ontology children among the clip's labels."""
    present = set(mids)
    return [label for label, mid in zip(labels, mids, strict=True) if not children.get(mid, set()) & present]


def _monolabel_rows(csv_path: Path, children: dict[str, set[str]]) -> pd.DataFrame:

    frame = read_csv(csv_path)
    require_columns(frame, ["fname", "labels", "mids"], csv_path)
    kept = []
    for number, row in enumerate(frame.itertuples(index=False), start=2):
        labels, mids = row.labels.split(","), row.mids.split(",")
        if len(labels) != len(mids):
            raise DatasetError(f"{csv_path}: clip {row.fname}: {len(labels)} labels but {len(mids)} mids")
        remaining = unsmear(labels, mids, children)
        if len(remaining) == 1:
            kept.append({"filename": row.fname, "category": remaining[0], "row": f"{csv_path}:{number}"})
    return pd.DataFrame(kept, columns=["filename", "category", "row"])


def select_classes(
    frame: pd.DataFrame, classes: tuple[str, ...], use_unknown: bool, samples_per_other: int | None
) -> pd.DataFrame:
    absent = [name for name in classes if name not in set(frame["category"])]
    if not classes or absent:
        raise DatasetError(f"FSD50K: requested classes {absent or '[]'} have no monolabel clips")
    selected = frame[frame["category"].isin(classes)]
    if not use_unknown:
        return selected.reset_index(drop=True)
    others = frame[~frame["category"].isin(classes)]
    categories = sorted(others["category"].unique())
    count = samples_per_other or -(-len(selected) // max(1, len(categories)))
    sampled = [
        others[others["category"] == name].sample(n=count, replace=True, random_state=SEED)
        for name in categories
    ]
    unknown = pd.concat(sampled).assign(category=UNKNOWN_LABEL) if sampled else others.iloc[:0]
    return pd.concat([selected, unknown]).sample(frac=1.0, random_state=SEED).reset_index(drop=True)


def fsd50k_catalog(root: Path, options: dict) -> tuple[pd.DataFrame, Path]:
    truth = root / "FSD50K.ground_truth"
    ontology = Path(options.get("ontology") or root / "ontology.json")
    children = load_children(ontology)
    classes = tuple(options.get("classes") or FSD50K_CLASSES)
    use_unknown = bool(options.get("use_unknown_class", False))
    samples = options.get("samples_per_other_class", 2)
    rows = []
    for part, split in (("dev", "train"), ("eval", "test")):
        frame = select_classes(
            _monolabel_rows(truth / f"{part}.csv", children), classes, use_unknown, samples
        )
        audio_dir = f"FSD50K.{part}_audio"
        for number, row in enumerate(frame.itertuples(index=False)):
            # Clips sampled twice for `other` keep one file but need distinct ids.
            clip_id = (
                f"{part}-{row.filename}"
                if row.category != UNKNOWN_LABEL
                else f"{part}-{row.filename}-o{number}"
            )
            rows.append(
                {
                    "clip_id": clip_id,
                    "path": f"{audio_dir}/{row.filename}.wav",
                    "label": row.category,
                    "fold": 0,
                    "split": split,
                    "source_row": row.row,  # layouts.ROW_COLUMN (layouts imports this module)
                }
            )
    return pd.DataFrame(rows, columns=["clip_id", "path", "label", "fold", "split", "source_row"]), root
