"""Dataset layouts -> a catalog: one row per clip with clip_id, path (relative to the dataset root), label,
fold (0 when the dataset has no folds) and split ('train' / 'test' when the dataset defines them, else '').
While it is built, a catalog also carries ROW_COLUMN, the metadata row each clip comes from ("<csv>:<line>"), so
that a problem found later (a file that does not exist) is reported where the user can fix it; it is not written
to catalog.csv."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pandas as pd

from aed.datasets.csv_files import read_csv, require_columns
from aed.datasets.errors import DatasetError
from aed.datasets.fsd50k import fsd50k_catalog

CATALOG_COLUMNS = ["clip_id", "path", "label", "fold", "split"]
ROW_COLUMN = "source_row"
ESC10_CLASSES = (
    "chainsaw",
    "clock_tick",
    "crackling_fire",
    "crying_baby",
    "dog",
    "helicopter",
    "rain",
    "rooster",
    "sea_waves",
    "sneezing",
)
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


def safe_relative_path(root: Path, name: str, where: str) -> str:
    """A dataset-relative POSIX path; absolute paths and paths escaping the root are rejected."""
    relative = PurePosixPath(str(name).replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts or str(name).strip() == "":
        raise DatasetError(f"{where}: path {name!r} points outside the dataset root {root}")
    resolved = (root / relative).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise DatasetError(f"{where}: path {name!r} resolves outside the dataset root {root}")
    return str(relative)


def parse_fold(value: str, where: str) -> int:
    text = str(value).strip()
    if text == "":
        return 0
    try:
        return int(text)
    except ValueError as error:
        raise DatasetError(f"{where}: fold {value!r} is not an integer") from error


def find_esc50_root(root: Path) -> tuple[Path, Path]:
    """(dataset root, metadata CSV) for ESC-50 (meta/esc50.csv) or the ESC-10 mirror (meta.csv), possibly one
    folder down (as in the GitHub archive's ESC-50-master/)."""
    for base in [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []:
        for meta in (base / "meta" / "esc50.csv", base / "meta.csv"):
            if meta.exists() and (base / "audio").is_dir():
                return base, meta
    raise DatasetError(f"{root}: no ESC-50 layout found (expected meta/esc50.csv or meta.csv next to audio/)")


def esc50_catalog(root: Path, esc10_only: bool = True) -> tuple[pd.DataFrame, Path]:
    base, meta_path = find_esc50_root(root)
    meta = read_csv(meta_path)
    require_columns(meta, ["filename", "fold", "category"], meta_path)
    if esc10_only:
        if "esc10" in meta.columns:
            keep = meta["esc10"].str.strip().str.lower() == "true"
        else:
            keep = meta["category"].isin(ESC10_CLASSES)
        meta = meta[keep]
    rows = []
    # the line in the metadata file (header on line 1), also past the rows ESC-10 leaves out
    for index, row in zip(meta.index, meta.itertuples(index=False), strict=True):
        where = f"{meta_path}:{index + 2}"
        path = safe_relative_path(base, f"audio/{row.filename}", where)
        rows.append(
            {
                "clip_id": Path(row.filename).stem,
                "path": path,
                "label": row.category,
                "fold": parse_fold(row.fold, where),
                "split": "",
                ROW_COLUMN: where,
            }
        )
    return pd.DataFrame(rows, columns=[*CATALOG_COLUMNS, ROW_COLUMN]), base


def custom_csv_catalog(csv_path: Path, audio_root: Path | None = None) -> tuple[pd.DataFrame, Path]:
    """`filename,label[,fold]` (or the reference's `filename,category`); filenames relative to audio_root
    (default: the CSV's folder). A filename without extension takes the one found on disk (.wav first)."""
    frame = read_csv(csv_path)
    if "label" not in frame.columns and "category" in frame.columns:
        frame = frame.rename(columns={"category": "label"})
    require_columns(frame, ["filename", "label"], csv_path)
    root = audio_root or csv_path.parent
    rows = []
    for number, row in enumerate(frame.to_dict("records"), start=2):
        where = f"{csv_path}:{number}"
        name = safe_relative_path(root, row["filename"].strip(), where)
        if not Path(name).suffix:
            name = _with_extension(root, name)
        rows.append(
            {
                "clip_id": Path(name).stem,
                "path": safe_relative_path(root, name, where),
                "label": row["label"].strip(),
                "fold": parse_fold(row.get("fold", ""), where),
                "split": row.get("split", "").strip(),
                ROW_COLUMN: where,
            }
        )
    return pd.DataFrame(rows, columns=[*CATALOG_COLUMNS, ROW_COLUMN]), root


def _with_extension(root: Path, name: str) -> str:
    for extension in AUDIO_EXTENSIONS:
        if (root / f"{name}{extension}").exists():
            return f"{name}{extension}"
    return f"{name}.wav"


def build_catalog(layout: str, root: Path, options: dict) -> tuple[pd.DataFrame, Path]:
    if layout == "esc50":
        return esc50_catalog(root, esc10_only=options.get("esc10_only", True))
    if layout == "fsd50k":
        return fsd50k_catalog(root, options)
    if layout == "csv":
        csv_name = options.get("csv") or "labels.csv"
        csv_path = root / csv_name if not Path(csv_name).is_absolute() else Path(csv_name)
        return custom_csv_catalog(csv_path, root)
    raise DatasetError(f"unknown dataset layout {layout!r}; expected esc50, fsd50k or csv")
