"""Step `ingest`: dataset source -> data/raw (pinned by data.dvc) + manifest.csv."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from aed.datasets.errors import DatasetError
from aed.outputs import check_file_outputs
from aed.params import load_section
from aed.records import write_record
from aed.redact import redact
from components.common import add_params_option, env_path

# pandas comes with aed.datasets.ingest: imported where used, so that `aed --help` stays fast.
if TYPE_CHECKING:
    from aed.datasets.ingest import IngestParams, SourceSpec


def __getattr__(name: str) -> Any:
    """IngestParams on first use (PEP 562): its module loads pandas, which `aed --help` must not pay for."""
    if name == "IngestParams":
        from aed.datasets.ingest import IngestParams

        return IngestParams
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


MIRROR_ENV = "AED_DATA_MIRROR"


def source_spec(params: IngestParams) -> SourceSpec:
    """The effective source: the local mirror named by AED_DATA_MIRROR wins over params (tests, CI, offline)."""
    return params.source_spec(env_path(MIRROR_ENV))


def run(
    params: IngestParams,
    raw_dir: Path,
    manifest_path: Path,
    record_path: Path | None = None,
    fetch: bool = True,
    describe: bool = True,
    force: bool = False,
) -> dict:
    """Fetch the source into raw_dir (when `fetch`; again even if it is up to date when `force`), then describe
    raw_dir in the manifest (when `describe`)."""
    if force and not fetch:
        raise DatasetError("--force fetches the source again; it cannot be combined with --no-fetch")
    from aed.datasets.ingest import check_current, fetch_source, is_fetched, write_manifest

    spec = source_spec(params)
    local_source = None if urlparse(spec.source).scheme else Path(spec.source)
    check_file_outputs(
        {"--manifest": manifest_path, "--metrics": record_path},
        {"raw folder": raw_dir, "dataset source": local_source, "download cache": Path(params.cache_dir)},
    )
    fetched = "no (--no-fetch)"
    if fetch:
        fetched = fetch_source(spec, raw_dir, Path(params.cache_dir), force)
    elif not is_fetched(raw_dir, spec):
        raise DatasetError(
            f"{raw_dir}: does not hold the configured source {redact(spec.source)} ({spec.layout}); "
            "fetch it first with `aed ingest --fetch-only` (make data) or `dvc pull data.dvc`"
        )
    else:
        check_current(spec, raw_dir)
    if not describe:
        return {"source": redact(spec.source), "fetch": fetched}
    manifest = write_manifest(raw_dir, manifest_path)
    metrics = {
        "source": redact(spec.source),  # the record is a file: no password of the URL in it
        "layout": spec.layout,
        "n_clips": len(manifest),
        "n_with_problem": int((manifest["problem"] != "").sum()),
        "clips_per_class": dict(sorted(Counter(manifest["label"]).items())),
    }
    if record_path:
        write_record(record_path, "ingest", metrics, inputs={"manifest": manifest_path})
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
    parser.add_argument(
        "--force",
        action="store_true",
        help="fetch the source again even when --raw-dir holds its current content",
    )
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    from aed.datasets.ingest import IngestParams

    params = load_section(args.params, "ingest", IngestParams)
    metrics = run(
        params,
        args.raw_dir,
        args.manifest,
        args.metrics,
        fetch=not args.no_fetch,
        describe=not args.fetch_only,
        force=args.force,
    )
    print(f"ingest: {metrics}")
    return 0
