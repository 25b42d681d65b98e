"""Reading a dataset's metadata CSV: every value as text, and one clear error naming the file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from aed.datasets.errors import DatasetError


def read_csv(path: Path, **kwargs) -> pd.DataFrame:
    if not path.exists():
        raise DatasetError(f"{path}: CSV file not found")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, **kwargs)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
        raise DatasetError(f"{path}: unreadable CSV ({error})") from error


def require_columns(frame: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
