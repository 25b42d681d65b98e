"""Bring a dataset source into the raw data folder and describe it in a manifest.

Two phases, so that DVC can pin the raw folder (data.dvc) the way `dvc import` would:
- fetch: source (http zip | local directory | s3://) -> raw_dir with the selected clips, their licence files,
  catalog.csv (the selection) and SOURCE.json (what was fetched). Skipped when raw_dir already holds that source
  as it is now: an archive by its URL and sha256, a local folder or an S3 prefix by its content (the selection
  and each file's size and modification time, aed.datasets.freshness; S3 objects by ETag). A metadata row
  naming a file that does not exist stops the fetch, with the row.
- manifest: raw_dir -> manifest.csv with one row per clip (id, path, label, fold, split, duration, sample rate,
  channels, sha256, problem). Files that are missing or unreadable stay in the manifest with the problem written
  down; the validate step decides about them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import pandas as pd
from tqdm import tqdm

from aed.audio import AudioError, probe
from aed.datasets import fetch, freshness
from aed.datasets.errors import DatasetError
from aed.datasets.layouts import CATALOG_COLUMNS, ROW_COLUMN, build_catalog
from aed.outputs import OutputSpec, check_not_overlapping, check_replaceable, replacing
from aed.params import bounded
from aed.records import atomic_write_text, sha256_file, write_json
from aed.redact import redact
from aed.tables import read_table

log = logging.getLogger(__name__)
MANIFEST_COLUMNS = [*CATALOG_COLUMNS, "duration_s", "sample_rate", "channels", "sha256", "problem"]
LICENCE_FILES = freshness.LICENCE_FILES
# data/raw is pinned by data.dvc: its ownership marker is the SOURCE.json ingest always wrote there (with its
# fingerprint), so that the folder's DVC hash does not change.
RAW_OUTPUT = OutputSpec("ingest", marker="SOURCE.json", marker_key="fingerprint", manifest=False)


@dataclass(frozen=True)
class SourceSpec:
    source: str
    sha256: str | None = None
    layout: str = "esc50"
    options: dict = field(default_factory=dict)
    s3_endpoint_url: str | None = None

    @property
    def identity(self) -> str:
        """What the source is, independent of where a local copy sits and free of credentials, so that the
        raw folder (and its DVC hash) is the same on every machine."""
        parsed = urlparse(self.source)
        if parsed.scheme in ("http", "https", "s3"):
            return parsed._replace(netloc=parsed.hostname or "").geturl() if parsed.password else self.source
        return f"local:{Path(self.source).name}"

    def fingerprint(self) -> str:
        fields = {
            "source": self.identity,
            "sha256": self.sha256,
            "layout": self.layout,
            "options": self.options,
        }
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


ESC50_URL = "https://github.com/karoldvl/ESC-50/archive/master.zip"


@dataclass
class FSD50KOptions:
    """`ingest.fsd50k`: which FSD50K labels become classes (aed.datasets.fsd50k)."""

    ontology: str | None = None  # AudioSet ontology.json (default: <source>/ontology.json)
    classes: list[str] = field(default_factory=list)
    use_unknown_class: bool = False
    samples_per_other_class: int | None = bounded(2, 0)


@dataclass
class IngestParams:
    """The `ingest` section: where the dataset comes from and how its layout is read."""

    source: str = ESC50_URL  # http(s) archive, local folder or s3:// prefix
    sha256: str | None = None  # of a downloaded archive
    layout: Literal["esc50", "fsd50k", "csv"] = "esc50"
    esc10_only: bool = True  # layout esc50
    csv: str | None = None  # layout csv: the CSV's path inside the source
    s3_endpoint_url: str | None = None
    cache_dir: str = ".cache/aed"
    fsd50k: FSD50KOptions = field(default_factory=FSD50KOptions)

    def source_spec(self, mirror: Path | None = None) -> SourceSpec:
        """What to fetch: a local mirror, when given, replaces the configured source (and its pinned hash); only
        the options of the configured layout are kept, so the others do not change the raw folder's identity."""
        source, sha256 = (str(mirror.resolve()), None) if mirror else (self.source, self.sha256)
        options: dict = {}
        if self.layout == "esc50":
            options = {"esc10_only": self.esc10_only}
        elif self.layout == "csv":
            options = {"csv": self.csv}
        elif self.layout == "fsd50k":
            options = dataclasses.asdict(self.fsd50k)
        return SourceSpec(source, sha256, self.layout, options, self.s3_endpoint_url)


def stage_source(spec: SourceSpec, cache_dir: Path, force: bool = False) -> Path:
    """A local directory holding the dataset as published. `force`: extract the archive again, and download
    every S3 object again, instead of trusting the cache."""
    scheme = urlparse(spec.source).scheme
    if scheme in ("http", "https"):
        archive = cache_dir / "downloads" / (Path(urlparse(spec.source).path).name or "dataset.zip")
        fetch.download(spec.source, archive, spec.sha256)
        extracted = cache_dir / "extracted" / sha256_file(archive)[:16]
        if force or not extracted.exists():
            with replacing(extracted, OutputSpec("ingest")) as staging:
                fetch.extract_zip(archive, staging)
        return extracted
    if scheme == "s3":
        bucket, prefix = fetch.parse_s3_url(spec.source)
        staged = cache_dir / "s3" / bucket / (prefix or "_root")
        return fetch.download_s3_prefix(spec.source, staged, spec.s3_endpoint_url, force=force)
    local = Path(spec.source).expanduser()
    if not local.is_dir():
        raise DatasetError(f"{local}: dataset directory not found")
    return local


def is_fetched(raw_dir: Path, spec: SourceSpec) -> bool:
    """raw_dir was fetched from this source with these settings (its content is compared by `fetch_source`)."""
    marker = raw_dir / "SOURCE.json"
    if not marker.exists() or not (raw_dir / "catalog.csv").exists():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False  # not a folder ingest wrote: fetching into it is refused (aed.outputs)
    return isinstance(recorded, dict) and recorded.get("fingerprint") == spec.fingerprint()


UP_TO_DATE = "up to date"


def pinned_by_settings(spec: SourceSpec) -> bool:
    """An http(s) archive is named by its URL and sha256: the settings say what it holds. A local folder or an
    S3 prefix can change under the same name, so its content has to be compared."""
    return urlparse(spec.source).scheme in ("http", "https")


def fetch_source(spec: SourceSpec, raw_dir: Path, cache_dir: Path, force: bool = False) -> str:
    """Copy the selected clips of the source into raw_dir, unless raw_dir already holds them as they are now
    (`force`: copy them again regardless). Says which happened: "up to date", "fetched" or "fetched again"."""
    if not force and pinned_by_settings(spec) and is_fetched(raw_dir, spec):
        log.info("%s already holds %s; not fetching again", raw_dir, redact(spec.source))
        return UP_TO_DATE
    local_source = Path(spec.source).expanduser() if not urlparse(spec.source).scheme else None
    sources = {"dataset source": local_source, "download cache": cache_dir}
    # Refused before a download: raw_dir is replaced whole, so it must not hold its own source, nor be a
    # folder ingest did not write.
    check_not_overlapping(raw_dir, sources)
    check_replaceable(raw_dir, RAW_OUTPUT)
    root = stage_source(spec, cache_dir, force)
    catalog, dataset_root = build_catalog(spec.layout, root, spec.options)
    if catalog.empty:  # a header-only CSV, an ESC-50 metadata file without ESC-10 rows
        raise DatasetError(f"{redact(spec.source)}: the {spec.layout} layout finds no clips to fetch")
    check_files_exist(catalog, dataset_root, raw_dir)
    catalog = catalog[CATALOG_COLUMNS]
    selection = _selection(catalog, dataset_root)
    catalog_text = catalog.to_csv(index=False)
    if force:
        log.info("%s: fetching %s again (--force)", raw_dir, redact(spec.source))
    elif _up_to_date(spec, raw_dir, dataset_root, selection, catalog_text):
        return UP_TO_DATE
    again = is_fetched(raw_dir, spec)  # before the swap: an earlier fetch of this source was replaced
    sources.update({"staged dataset": root, "dataset root": dataset_root})
    with replacing(raw_dir, RAW_OUTPUT, sources) as staging:
        _copy_selection(dataset_root, staging, selection, catalog_text, spec)
    return "fetched again" if again else "fetched"


def _up_to_date(
    spec: SourceSpec, raw_dir: Path, dataset_root: Path, selection: list[str], catalog_text: str
) -> bool:
    """Whether raw_dir holds the source as it is now; what differs is said (a new folder says nothing)."""
    if not is_fetched(raw_dir, spec):
        return False
    started = time.perf_counter()
    changes = freshness.compare(dataset_root, raw_dir, selection, catalog_text)
    seconds = time.perf_counter() - started
    if changes.foreign:
        raise _foreign_files_error(spec, raw_dir, changes.foreign)
    if not changes:
        log.info(
            "%s already holds the current content of %s (%d files compared in %.2f s); not fetching again",
            raw_dir,
            redact(spec.source),
            changes.checked,
            seconds,
        )
        return True
    log.warning(
        "%s changed since %s was fetched: %s; fetching again",
        redact(spec.source),
        raw_dir,
        changes.describe(),
    )
    return False


def _foreign_files_error(spec: SourceSpec, raw_dir: Path, foreign: list[str]) -> DatasetError:
    """A fetch replaces raw_dir whole: files someone put there (new clips copied into data/raw instead of the
    source) would be lost, so they stop it."""
    listed = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    return DatasetError(
        f"{raw_dir}: holds {len(foreign)} file(s) no fetch wrote ({listed}), and a fetch replaces it whole; "
        f"put new clips in the source {redact(spec.source)} and its metadata, then delete them from {raw_dir} "
        "(or fetch with --force to drop them)"
    )


def check_current(spec: SourceSpec, raw_dir: Path) -> None:
    """Without fetching (the DVC stage): stop when raw_dir no longer holds what a local source holds now, so
    that an edit made since `make data` is not trained on silently. A remote source is not contacted."""
    local = Path(spec.source).expanduser()
    if urlparse(spec.source).scheme or not local.is_dir():
        return
    catalog, dataset_root = build_catalog(spec.layout, local, spec.options)
    check_files_exist(catalog, dataset_root, raw_dir)  # a row added since, naming a file that is not there
    catalog = catalog[CATALOG_COLUMNS]
    selection = _selection(catalog, dataset_root)
    changes = freshness.compare(
        dataset_root, raw_dir, selection, catalog.to_csv(index=False), sync_times=False
    )
    if changes:
        raise DatasetError(
            f"{raw_dir}: older than its source {redact(spec.source)} ({changes.describe()}); fetch it again "
            "with `aed ingest --fetch-only` (make data), then run again"
        )


# A metadata file naming thousands of missing files is listed this far; the count says how many there are.
MAX_LISTED_ROWS = 50


def check_files_exist(catalog: pd.DataFrame, dataset_root: Path, raw_dir: Path) -> None:
    """Stop when a metadata row names a file that is not in the source: one line per row (its file and line,
    and the path), then one error with the count. Training on the rows that remain would silently drop clips
    the user listed (a typo, a copy left unfinished); raw_dir is left as it was."""
    missing = catalog[[not (dataset_root / path).is_file() for path in catalog["path"]]]
    missing = missing.drop_duplicates(subset=[ROW_COLUMN])  # FSD50K's `other` may draw one row twice
    if missing.empty:
        return
    for row in missing.head(MAX_LISTED_ROWS).itertuples(index=False):
        log.error("%s: file %s not found in %s", getattr(row, ROW_COLUMN), row.path, dataset_root)
    if len(missing) > MAX_LISTED_ROWS:
        log.error("... and %d more rows naming a missing file", len(missing) - MAX_LISTED_ROWS)
    first = missing.iloc[0]
    raise DatasetError(
        f"{first[ROW_COLUMN]}: file {first['path']} not found; {len(missing)} row(s) in all name a file that "
        f"is not in {dataset_root} (each listed above); add the files or remove the rows, then ingest again "
        f"({raw_dir} left as it was)"
    )


def _selection(catalog: pd.DataFrame, dataset_root: Path) -> list[str]:
    """The files of the source that go into the raw folder: the catalog's clips and the licence files."""
    licences = [name for name in LICENCE_FILES if (dataset_root / name).is_file()]
    return sorted(set(catalog["path"]) | set(licences))


def _copy_selection(
    dataset_root: Path, raw_dir: Path, selection: list[str], catalog_text: str, spec: SourceSpec
) -> None:
    for relative in tqdm(selection, desc="fetch", unit="file", leave=False):
        freshness.copy_with_time(dataset_root / relative, raw_dir / relative)
    (raw_dir / freshness.CATALOG).write_text(catalog_text)
    # Only what identifies the source: no timestamps, so the folder's DVC hash is reproducible.
    source_record = {
        "source": spec.identity,
        "layout": spec.layout,
        "options": spec.options,
        "sha256": spec.sha256,
    }
    write_json(raw_dir / freshness.SOURCE_RECORD, {**source_record, "fingerprint": spec.fingerprint()})


def describe_clip(raw_dir: Path, row: dict) -> dict:
    path = raw_dir / row["path"]
    facts = {"duration_s": 0.0, "sample_rate": 0, "channels": 0, "sha256": "", "problem": ""}
    if not path.is_file():
        return {**row, **facts, "problem": f"file missing: {path}"}
    facts["sha256"] = sha256_file(path)
    try:
        info = probe(path)
    except AudioError as error:
        return {**row, **facts, "problem": str(error)}
    facts.update(duration_s=round(info.duration_s, 6), sample_rate=info.sample_rate, channels=info.channels)
    return {**row, **facts}


def write_manifest(raw_dir: Path, manifest_path: Path, describe: Callable = describe_clip) -> pd.DataFrame:
    catalog_path = raw_dir / "catalog.csv"
    if not catalog_path.exists():
        raise DatasetError(f"{catalog_path}: missing; fetch the source first (aed ingest)")
    catalog = read_table(catalog_path, what="catalog")
    rows = [describe(raw_dir, row) for row in catalog.to_dict("records")]
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    atomic_write_text(manifest_path, manifest.to_csv(index=False))
    return manifest
