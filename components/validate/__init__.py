"""Step `validate`: manifest -> validated manifest + quarantine report (reports/validation.json) + GX Data Docs."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aed.datasets.errors import DatasetError
from aed.outputs import OutputSpec, check_file_outputs, replacing
from aed.params import load_section
from aed.records import atomic_write_text, write_record
from components.common import add_params_option

# pandas comes with aed.tables and aed.validation: imported where used, so that `aed --help` stays fast.
if TYPE_CHECKING:
    from aed.validation.validate import ValidateParams


def __getattr__(name: str) -> Any:
    """ValidateParams on first use (PEP 562): its module loads pandas, which `aed --help` must not pay for."""
    if name == "ValidateParams":
        from aed.validation.validate import ValidateParams

        return ValidateParams
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(
    params: ValidateParams,
    manifest_path: Path,
    raw_dir: Path,
    validated_path: Path,
    record_path: Path,
    docs_dir: Path | None = None,
) -> dict:
    from aed.tables import read_table
    from aed.validation.validate import manifest_columns, validate_manifest

    check_file_outputs(
        {"--validated": validated_path, "--report": record_path},
        {"manifest": manifest_path, "raw audio folder": raw_dir, "Data Docs folder": docs_dir},
    )
    manifest = read_table(manifest_path, manifest_columns(), "manifest (as `aed ingest` writes it)")
    manifest, background = _with_background(params, manifest, raw_dir)
    check_classes(params, manifest["label"], manifest_path)
    # The Data Docs folder is replaced whole, and only when it is absent, empty or earlier Data Docs.
    sources = {"raw audio folder": raw_dir, "manifest": manifest_path}
    docs = nullcontext(None) if docs_dir is None else replacing(docs_dir, OutputSpec("validate"), sources)
    with docs as staging:
        outcome = validate_manifest(
            manifest, raw_dir, params.expectation_parameters(), params, staging, params.jobs
        )
    atomic_write_text(validated_path, outcome.passed.to_csv(index=False))
    report = {
        **outcome.report,
        "policy": params.on_bad_file,
        "data_docs": str(docs_dir) if docs_dir else None,
        "background": background,
    }
    write_record(record_path, "validation", report, inputs={"manifest": manifest_path})
    # Printed before any failure below: the console always says what was set aside and where the list is.
    print(quarantine_summary(report, record_path), flush=True)
    if outcome.dataset_problems:
        shares = any(problem.startswith("class share") for problem in outcome.dataset_problems)
        source = f"share limits: {params.share_source()}; " if shares else ""
        raise DatasetError(
            f"{manifest_path}: "
            + "; ".join(outcome.dataset_problems)
            + f" ({source}full report {record_path})"
        )
    if outcome.quarantined and params.on_bad_file == "fail":
        first = outcome.quarantined[0]
        raise DatasetError(
            f"{len(outcome.quarantined)} bad file(s) and validate.on_bad_file is 'fail'; first: "
            f"{first['path']}: {'; '.join(first['reasons'])} (all in {record_path})"
        )
    return {key: report[key] for key in ("n_clips_in", "n_passed", "n_quarantined")}


def _with_background(params: ValidateParams, manifest: Any, raw_dir: Path) -> tuple[Any, dict | None]:
    """The manifest with its background class (validate.background / background_dir), and what was drawn."""
    if not params.has_background():
        return manifest, None
    from aed.datasets.background import add_background
    from aed.datasets.ingest import describe_clip

    plan = add_background(manifest, Path(raw_dir), params.classes, params.background, params.background_dir,
                          params.background_samples, describe_clip)  # fmt: skip
    summary = plan.summary()
    left = (
        f"; left out (neither a class nor background): {summary['left_out']}" if summary["left_out"] else ""
    )
    print(
        f"validate: background class: {summary['clips']} clips drawn from {summary['drawn']}{left}",
        flush=True,
    )
    return plan.manifest, summary


def check_classes(params: ValidateParams, labels: Iterable[str], manifest_path: Path) -> None:
    """Stop before any clip is checked when validate.classes and the labels of the data disagree (a typo would
    otherwise quarantine a whole class, or leave a model output without clips)."""
    from aed.validation.validate import label_mismatch

    found = sorted(set(labels))
    if not params.classes:
        raise DatasetError(
            f"validate.classes: empty class list; list the classes the model must learn "
            f"(the labels in {manifest_path}: [{', '.join(found)}])"
        )
    mismatch = label_mismatch(labels, params.classes)
    if mismatch:
        raise DatasetError(f"validate.classes: {mismatch} (data: {manifest_path})")


def quarantine_summary(report: dict, record_path: Path) -> str:
    """`validate: 3 of 36 clips quarantined (file missing 2, silent 1); full report: reports/validation.json`."""
    n_in, n_out = report["n_clips_in"], report["n_quarantined"]
    counts = ", ".join(f"{kind} {count}" for kind, count in report["quarantine_counts"].items())
    quarantined = f"{n_out} of {n_in} clips quarantined ({counts})" if n_out else "0 clips quarantined"
    return f"validate: {quarantined}, {report['n_passed']} passed; full report: {record_path}"


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
    from aed.validation.validate import ValidateParams

    params = load_section(args.params, "validate", ValidateParams)
    run(params, args.manifest, args.raw_dir, args.validated, args.report, args.data_docs)
    return 0  # run() printed the summary
