"""Step `convert`: int8 model -> STM32 C code and footprint with `stedgeai` when installed, else the estimator.

The record says which one produced its figures (`source: stedgeai | estimator`); the estimator's figures are
always included (labelled) so the two can be compared whenever the tool ran.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

from aed.dvc_metrics import convert_figures, write_figures
from aed.footprint import estimate
from aed.outputs import OutputSpec, check_file_outputs, check_output, replacing
from aed.params import load_section
from aed.records import write_record
from aed.stedgeai import (
    TARGETS,
    ConvertParams,
    StedgeaiError,
    StedgeaiFigures,
    StedgeaiReportError,
    conversion_record,
    convert_with_stedgeai,
    estimator_figures,
    locate_tool,
)
from components.common import add_params_option


def run(
    params: ConvertParams,
    model: Path,
    target: str,
    out_dir: Path,
    record_path: Path | None,
    dvc_metrics_path: Path | None = None,
) -> dict:
    """The footprint record to record_path; with dvc_metrics_path, its compared figures (flash, RAM, latency)
    also to that file, the one dvc.yaml lists under `metrics:`."""
    model, out_dir = Path(model), Path(out_dir)
    check_output(out_dir, OutputSpec("convert"), {"model": model})
    check_file_outputs(
        {"--record": record_path, "--dvc-metrics": dvc_metrics_path}, {"model": model, "--out": out_dir}
    )
    if not model.is_file():
        raise FileNotFoundError(f"{model}: model file not found")
    estimated = estimate(model, target, tool_version=params.runtime_constants)
    tool = locate_tool(params)
    # The directory always exists (a DVC / KFP output) but holds only the tool's files (and the output marker):
    # written aside and swapped in whole, only over an earlier convert output.
    with replacing(out_dir, OutputSpec("convert"), {"model": model}) as staging:
        figures = (
            _in_output(params, tool, model, target, staging, out_dir)
            if tool
            else estimator_figures(estimated)
        )
    record = conversion_record(figures, target, estimated).to_dict()
    if record_path is not None:
        write_record(record_path, "convert", record, inputs={"model": model})
    if dvc_metrics_path is not None:
        write_figures(dvc_metrics_path, convert_figures(record))
    return record


def _in_output(
    params: ConvertParams, tool: Path, model: Path, target: str, staging: Path, out_dir: Path
) -> StedgeaiFigures:
    """stedgeai run in the temporary folder, its paths reported where they will be. On a failure the folder is
    removed, so its log is kept beside the output, and the message points there."""
    try:
        figures = convert_with_stedgeai(params, tool, model, target, staging)
    except (StedgeaiError, StedgeaiReportError) as error:
        log = staging / "stedgeai.log"
        if not log.is_file():
            raise
        kept = out_dir.parent / f"{out_dir.name}.stedgeai-failed.log"
        shutil.copyfile(log, kept)
        raise type(error)(
            str(error).replace(str(log), str(kept)).replace(str(staging), str(out_dir))
        ) from error
    argv = [argument.replace(str(staging), str(out_dir)) for argument in figures.argv]
    return dataclasses.replace(figures, argv=argv)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert an int8 model with stedgeai (or estimate without it)"
    )
    add_params_option(parser)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--model-name", default=None, help="picks the target from convert.targets")
    parser.add_argument("--target", choices=TARGETS, default=None, help="overrides convert.targets")
    parser.add_argument("--stedgeai", type=Path, default=None, help="path to the stedgeai executable")
    parser.add_argument(
        "--out", type=Path, required=True, help="directory for generated C files and the tool log"
    )
    parser.add_argument(
        "--record", type=Path, required=True, help="the step's JSON record (provenance, figures)"
    )
    parser.add_argument(
        "--dvc-metrics", type=Path, default=None, help="JSON of the compared figures only (a DVC metric)"
    )
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    params = load_section(args.params, "convert", ConvertParams)
    if args.stedgeai is not None:
        params = dataclasses.replace(params, stedgeai=str(args.stedgeai))
    if args.target is None and args.model_name is None:
        raise ValueError("convert: give --model-name (its target is read from convert.targets) or --target")
    target = args.target or params.target_for(args.model_name)
    record = run(params, args.model, target, args.out, args.record, args.dvc_metrics)
    print(f"convert: source={record['source']} target={target} weights={record['weights_bytes']:,} B "
          f"activations={record['activations_bytes']:,} B macc={record['macc']:,}")  # fmt: skip
    return 0
