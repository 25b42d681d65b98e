"""Bring a dataset source into the raw data folder and describe it in a manifest.

Two phases, so that DVC can pin the raw folder (data.dvc) the way `dvc import` would:
- fetch: source (http zip | local directory | s3://) -> raw_dir with the selected clips, their licence files,
  catalog.csv (the selection) and SOURCE.json (what was fetched). Skipped when raw_dir already holds that source.
- manifest: raw_dir -> manifest.csv with one row per clip (id, path, label, fold, split, duration, sample rate,
  channels, sha256, problem). Files that are missing or unreadable stay in the manifest with the problem written
  down; the validate step decides about them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import pandas as pd
from tqdm import tqdm

from aed.audio import AudioError, probe
from aed.datasets import fetch
from aed.datasets.errors import DatasetError
from aed.datasets.layouts import CATALOG_COLUMNS, build_catalog
from aed.outputs import OutputSpec, check_not_overlapping, check_replaceable, replacing
from aed.params import bounded
from aed.records import atomic_write_text, sha256_file, write_json
from aed.redact import redact
from aed.tables import read_table

log = logging.getLogger(__name__)
MANIFEST_COLUMNS = [*CATALOG_COLUMNS, "duration_s", "sample_rate", "channels", "sha256", "problem"]
LICENCE_FILES = ("ATTRIBUTION.txt", "LICENSE", "LICENSE.txt", "README.md", "SHA256SUMS")
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


def stage_source(spec: SourceSpec, cache_dir: Path) -> Path:
    """A local directory holding the dataset as published."""
    scheme = urlparse(spec.source).scheme
    if scheme in ("http", "https"):
        archive = cache_dir / "downloads" / (Path(urlparse(spec.source).path).name or "dataset.zip")
        fetch.download(spec.source, archive, spec.sha256)
        extracted = cache_dir / "extracted" / sha256_file(archive)[:16]
        if not extracted.exists():
            with replacing(extracted, OutputSpec("ingest")) as staging:
                fetch.extract_zip(archive, staging)
        return extracted
    if scheme == "s3":
        bucket, prefix = fetch.parse_s3_url(spec.source)
        staged = cache_dir / "s3" / bucket / (prefix or "_root")
        return fetch.download_s3_prefix(spec.source, staged, spec.s3_endpoint_url)
    local = Path(spec.source).expanduser()
    if not local.is_dir():
        raise DatasetError(f"{local}: dataset directory not found")
    return local


def is_fetched(raw_dir: Path, spec: SourceSpec) -> bool:
    marker = raw_dir / "SOURCE.json"
    if not marker.exists() or not (raw_dir / "catalog.csv").exists():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False  # not a folder ingest wrote: fetching into it is refused (aed.outputs)
    return isinstance(recorded, dict) and recorded.get("fingerprint") == spec.fingerprint()


def fetch_source(spec: SourceSpec, raw_dir: Path, cache_dir: Path) -> pd.DataFrame:
    """Copy the selected clips of the source into raw_dir (idempotent)."""
    if is_fetched(raw_dir, spec):
        log.info("%s already holds %s; not fetching again", raw_dir, redact(spec.source))
        return read_table(raw_dir / "catalog.csv", what="catalog")
    local_source = Path(spec.source).expanduser() if not urlparse(spec.source).scheme else None
    sources = {"dataset source": local_source, "download cache": cache_dir}
    # Refused before a download: raw_dir is replaced whole, so it must not hold its own source, nor be a
    # folder ingest did not write.
    check_not_overlapping(raw_dir, sources)
    check_replaceable(raw_dir, RAW_OUTPUT)
    root = stage_source(spec, cache_dir)
    catalog, dataset_root = build_catalog(spec.layout, root, spec.options)
    sources.update({"staged dataset": root, "dataset root": dataset_root})
    with replacing(raw_dir, RAW_OUTPUT, sources) as staging:
        _copy_selection(catalog, dataset_root, staging, spec)
    return catalog


def _copy_selection(catalog: pd.DataFrame, dataset_root: Path, raw_dir: Path, spec: SourceSpec) -> None:
    for row in tqdm(
        catalog.itertuples(index=False), total=len(catalog), desc="fetch", unit="clip", leave=False
    ):
        source_file = dataset_root / row.path
        if source_file.is_file():
            target = raw_dir / row.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source_file, target)
    for name in LICENCE_FILES:
        if (dataset_root / name).is_file():
            shutil.copyfile(dataset_root / name, raw_dir / name)
    catalog.to_csv(raw_dir / "catalog.csv", index=False)
    # Only what identifies the source: no timestamps, so the folder's DVC hash is reproducible.
    source_record = {
        "source": spec.identity,
        "layout": spec.layout,
        "options": spec.options,
        "sha256": spec.sha256,
    }
    write_json(raw_dir / "SOURCE.json", {**source_record, "fingerprint": spec.fingerprint()})


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
