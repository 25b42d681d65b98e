"""Step `ingest`: dataset source -> data/raw (pinned by data.dvc) + manifest.csv."""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from aed.datasets.errors import DatasetError
from aed.datasets.ingest import SourceSpec, fetch_source, is_fetched, write_manifest
from aed.outputs import check_file_outputs
from aed.params import load_section
from aed.records import write_record
from aed.redact import redact
from components.common import add_params_option, env_path

ESC50_URL = "https://github.com/karoldvl/ESC-50/archive/master.zip"
MIRROR_ENV = "AED_DATA_MIRROR"


@dataclass
class FSD50KOptions:
    ontology: str | None = None
    classes: list[str] = field(default_factory=list)
    use_unknown_class: bool = False
    samples_per_other_class: int | None = 2


@dataclass
class IngestParams:
    source: str = ESC50_URL
    sha256: str | None = None
    layout: Literal["esc50", "fsd50k", "csv"] = "esc50"
    esc10_only: bool = True
    csv: str | None = None
    s3_endpoint_url: str | None = None
    cache_dir: str = ".cache/aed"
    fsd50k: FSD50KOptions = field(default_factory=FSD50KOptions)


def source_spec(params: IngestParams) -> SourceSpec:
    """The effective source: the local mirror named by AED_DATA_MIRROR wins over params (tests, CI, offline)."""
    mirror = env_path(MIRROR_ENV)
    source, sha256 = (str(mirror.resolve()), None) if mirror else (params.source, params.sha256)
    options: dict = {}
    if params.layout == "esc50":
        options = {"esc10_only": params.esc10_only}
    elif params.layout == "csv":
        options = {"csv": params.csv}
    elif params.layout == "fsd50k":
        options = {
            "ontology": params.fsd50k.ontology,
            "classes": params.fsd50k.classes,
            "use_unknown_class": params.fsd50k.use_unknown_class,
            "samples_per_other_class": params.fsd50k.samples_per_other_class,
        }
    return SourceSpec(source, sha256, params.layout, options, params.s3_endpoint_url)


def run(
    params: IngestParams,
    raw_dir: Path,
    manifest_path: Path,
    metrics_path: Path | None = None,
    fetch: bool = True,
    describe: bool = True,
) -> dict:
    spec = source_spec(params)
    local_source = None if urlparse(spec.source).scheme else Path(spec.source)
    check_file_outputs(
        {"--manifest": manifest_path, "--metrics": metrics_path},
        {"raw folder": raw_dir, "dataset source": local_source, "download cache": Path(params.cache_dir)},
    )
    if fetch:
        fetch_source(spec, raw_dir, Path(params.cache_dir))
    elif not is_fetched(raw_dir, spec):
        raise DatasetError(
            f"{raw_dir}: does not hold the configured source {redact(spec.source)} ({spec.layout}); "
            "fetch it first with `aed ingest --fetch-only` (make data) or `dvc pull data.dvc`"
        )
    if not describe:
        return {"source": redact(spec.source)}
    manifest = write_manifest(raw_dir, manifest_path)
    metrics = {
        "source": redact(spec.source),  # the record is a file: no password of the URL in it
        "layout": spec.layout,
        "n_clips": len(manifest),
        "n_with_problem": int((manifest["problem"] != "").sum()),
        "clips_per_class": dict(sorted(Counter(manifest["label"]).items())),
    }
    if metrics_path:
        write_record(metrics_path, "ingest", metrics, inputs={"manifest": manifest_path})
    return metrics


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ingest", help="fetch a dataset into data/raw and write its manifest")
    add_params_option(parser)
    parser.add_argument("--raw-dir", type=Path, default=Path("data/raw"))
    parser.add_argument("--manifest", type=Path, default=Path("artifacts/manifest.csv"))
    parser.add_argument("--metrics", type=Path, default=Path("reports/ingest.json"))
    phase = parser.add_mutually_exclusive_group()
    phase.add_argument("--fetch-only", action="store_true", help="only bring the source into --raw-dir")
    phase.add_argument("--no-fetch", action="store_true", help="only describe what --raw-dir already holds")
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    params = load_section(args.params, "ingest", IngestParams)
    metrics = run(
        params,
        args.raw_dir,
        args.manifest,
        args.metrics,
        fetch=not args.no_fetch,
        describe=not args.fetch_only,
    )
    print(f"ingest: {metrics}")
    return 0
