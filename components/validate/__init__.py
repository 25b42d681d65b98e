"""Step `validate`: manifest -> validated manifest + quarantine report (reports/validation.json) + GX Data Docs."""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aed.datasets.errors import DatasetError
from aed.outputs import OutputSpec, check_file_outputs, replacing
from aed.params import bounded, load_section
from aed.records import atomic_write_text, write_record
from aed.tables import read_table
from aed.validation.audio_checks import AudioCheckConfig
from aed.validation.validate import manifest_columns, validate_manifest
from components.common import add_params_option


@dataclass
class ValidateParams:
    classes: list[str] = field(default_factory=list)
    fold_min: int = bounded(0, 0)
    fold_max: int = bounded(5, 0)
    duration_min_s: float = bounded(0.1, 0.0)
    duration_max_s: float = bounded(60.0, 0.0)
    sample_rate_min: int = bounded(8000, 1)
    sample_rate_max: int = bounded(48000, 1)
    max_channels: int = bounded(2, 1)
    min_share: float = bounded(0.0, 0.0, 1.0)
    max_share: float = bounded(1.0, 0.0, 1.0)
    min_clips_per_class: int = bounded(1, 0)
    silent_peak_dbfs: float = bounded(-80.0, None, 0.0)
    min_active_s: float = bounded(0.1, 0.0)
    on_bad_file: Literal["quarantine", "fail"] = "quarantine"
    jobs: int = bounded(2, 1)


def run(
    params: ValidateParams,
    manifest_path: Path,
    raw_dir: Path,
    validated_path: Path,
    report_path: Path,
    docs_dir: Path | None = None,
) -> dict:
    if not params.classes:
        raise DatasetError("validate.classes: empty class list; list the classes the model must learn")
    check_file_outputs(
        {"--validated": validated_path, "--report": report_path},
        {"manifest": manifest_path, "raw audio folder": raw_dir, "Data Docs folder": docs_dir},
    )
    manifest = read_table(manifest_path, manifest_columns(), "manifest (as `aed ingest` writes it)")
    expectation_parameters = {
        "classes": sorted(params.classes),
        "fold_min": params.fold_min,
        "fold_max": params.fold_max,
        "duration_min_s": params.duration_min_s,
        "duration_max_s": params.duration_max_s,
        "sample_rate_min": params.sample_rate_min,
        "sample_rate_max": params.sample_rate_max,
        "max_channels": params.max_channels,
        "min_share": params.min_share,
        "max_share": params.max_share,
        "min_clips_per_class": params.min_clips_per_class,
    }
    audio_config = AudioCheckConfig(
        silent_peak_dbfs=params.silent_peak_dbfs, min_active_s=params.min_active_s
    )
    # The Data Docs folder is replaced whole, and only when it is absent, empty or earlier Data Docs.
    sources = {"raw audio folder": raw_dir, "manifest": manifest_path}
    docs = nullcontext(None) if docs_dir is None else replacing(docs_dir, OutputSpec("validate"), sources)
    with docs as staging:
        outcome = validate_manifest(
            manifest, raw_dir, expectation_parameters, audio_config, staging, params.jobs
        )
    atomic_write_text(validated_path, outcome.passed.to_csv(index=False))
    report = {
        **outcome.report,
        "policy": params.on_bad_file,
        "data_docs": str(docs_dir) if docs_dir else None,
    }
    write_record(report_path, "validation", report, inputs={"manifest": manifest_path})
    if outcome.dataset_problems:
        raise DatasetError(
            f"{manifest_path}: " + "; ".join(outcome.dataset_problems) + f" (see {report_path})"
        )
    if outcome.quarantined and params.on_bad_file == "fail":
        first = outcome.quarantined[0]
        raise DatasetError(
            f"{len(outcome.quarantined)} bad file(s) and validate.on_bad_file is 'fail'; first: "
            f"{first['path']}: {'; '.join(first['reasons'])} (all in {report_path})"
        )
    return {key: report[key] for key in ("n_clips_in", "n_passed", "n_quarantined")}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate", help="validate the manifest and the audio, quarantine bad files"
    )
    add_params_option(parser)
    parser.add_argument("--manifest", type=Path, default=Path("artifacts/manifest.csv"))
    parser.add_argument("--raw-dir", type=Path, default=Path("data/raw"))
    parser.add_argument("--validated", type=Path, default=Path("artifacts/validated.csv"))
    parser.add_argument("--report", type=Path, default=Path("reports/validation.json"))
    parser.add_argument("--data-docs", type=Path, default=Path("reports/data_docs"))
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    params = load_section(args.params, "validate", ValidateParams)
    metrics = run(params, args.manifest, args.raw_dir, args.validated, args.report, args.data_docs)
    print(f"validate: {metrics}")
    return 0
