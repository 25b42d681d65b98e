"""Reading the project's CSV tables (manifests, catalogs, indexes) with one-line errors that name the file."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

# the text columns of the manifests and indexes: kept as written ("007" stays "007", "NA" stays "NA")
TEXT_COLUMNS = {"clip_id": str, "path": str, "label": str, "split": str}


class TableError(ValueError):
    """A CSV table that is missing, unreadable or lacks a needed column."""


def read_table(
    path: Path, required: Iterable[str] = (), what: str = "CSV table", dtype: dict | type | None = None
) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise TableError(
            f"{path}: {what} not found" if not path.exists() else f"{path}: {what} is not a file"
        )
    try:
        frame = pd.read_csv(path, dtype=TEXT_COLUMNS if dtype is None else dtype, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TableError(f"{path}: unreadable {what} ({detail})") from None
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise TableError(f"{path}: {what} lacks the column(s) {missing}; it has {list(frame.columns)}")
    return frame
