"""Is the raw folder still what its source holds? A content check, so that an edited dataset is fetched again.

The check compares the source with the copy in the raw folder, file by file: the selection (catalog.csv, as the
layout builds it from the source's metadata now) and each selected file's size and modification time. A fetch
copies each file's modification time along with it, so an unchanged file costs one stat on each side; when only
the time differs (a `touch`, a fresh checkout of either side) the two files' sha256 decide, and the copy takes the
source's time, so the next check is cheap again. Nothing of this is written into the raw folder's own files: its
DVC hash depends on the content only, the same on every machine.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from aed.records import sha256_file

CATALOG = "catalog.csv"
SOURCE_RECORD = "SOURCE.json"
LICENCE_FILES = ("ATTRIBUTION.txt", "LICENSE", "LICENSE.txt", "README.md", "SHA256SUMS")


@dataclass
class Changes:
    """How the raw folder differs from its source: the selection's rows, and the relative paths of the files
    added to, changed in or gone from the source."""

    rows_changed: bool = False
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # in the raw folder, but not written there by a fetch
    checked: int = 0

    def __bool__(self) -> bool:
        return bool(self.rows_changed or self.added or self.changed or self.removed or self.foreign)

    def describe(self, shown: int = 3) -> str:
        kinds = (
            ("added", self.added),
            ("changed", self.changed),
            ("removed", self.removed),
            ("in the raw folder only, not written by a fetch", self.foreign),
        )
        parts = [f"{len(paths)} file(s) {name} ({_first(paths, shown)})" for name, paths in kinds if paths]
        rows = ["the metadata rows changed (catalog.csv)"] if self.rows_changed else []
        return "; ".join(rows + parts)


def _first(paths: list[str], shown: int) -> str:
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    return ", ".join(paths[:shown]) + more


def copy_with_time(source: Path, target: Path) -> None:
    """Copy the bytes and the modification time (not the permissions: a read-only mirror must not make the raw
    folder read-only)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    _take_time(source.stat().st_mtime_ns, target)


def _take_time(mtime_ns: int, target: Path) -> None:
    os.utime(target, ns=(target.stat().st_atime_ns, mtime_ns))


def compare(
    source_root: Path, raw_dir: Path, selection: list[str], catalog_text: str, sync_times: bool = True
) -> Changes:
    """The differences between the source's selected files (paths relative to source_root) plus the catalog
    built from it, and what raw_dir holds. `sync_times`: a copy found equal by its bytes takes the source's
    modification time (not while a DVC stage reads raw_dir)."""
    changes = Changes()
    catalog_path = raw_dir / CATALOG
    if not catalog_path.is_file() or catalog_path.read_text() != catalog_text:
        changes.rows_changed = True
    wanted = set(selection)
    for relative in sorted(wanted):
        changes.checked += 1
        state = _file_state(source_root / relative, raw_dir / relative, sync_times)
        if state != "same":
            getattr(changes, state).append(relative)
    kept = wanted | {CATALOG, SOURCE_RECORD}
    written = _written_by_fetch(catalog_path)
    for path in sorted(raw_dir.rglob("*")):
        relative = path.relative_to(raw_dir).as_posix()
        if path.is_file() and relative not in kept:
            getattr(changes, "removed" if written is None or relative in written else "foreign").append(
                relative
            )
    return changes


def _written_by_fetch(catalog_path: Path) -> set[str] | None:
    """The files the last fetch wrote into the raw folder (None when its catalog.csv cannot be read)."""
    try:
        paths = set(pd.read_csv(catalog_path, dtype=str, keep_default_na=False)["path"])
    except (OSError, ValueError, KeyError):  # pandas parser errors are ValueErrors
        return None
    return paths | set(LICENCE_FILES) | {CATALOG, SOURCE_RECORD}


def _file_state(source: Path, copy: Path, sync_times: bool) -> str:
    """'same', 'added' (not in the copy), 'removed' (not in the source) or 'changed'."""
    try:
        original = source.stat()
    except FileNotFoundError:  # a metadata row naming a file that is not there (a fetch stops on it)
        return "removed"
    try:
        copied = copy.stat()
    except FileNotFoundError:
        return "added"
    if original.st_size != copied.st_size:
        return "changed"
    if original.st_mtime_ns == copied.st_mtime_ns:
        return "same"
    if sha256_file(source) != sha256_file(copy):
        return "changed"
    if sync_times:  # same bytes: remember the source's time, so that the next check is a stat
        _take_time(original.st_mtime_ns, copy)
    return "same"
