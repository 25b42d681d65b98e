"""Step `convert`: int8 model -> STM32 C code and footprint with `stedgeai` when installed, else the estimator.

The record says which one produced its figures (`source: stedgeai | estimator`); the estimator's figures are
always included (labelled) so the two can be compared whenever the tool ran.
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aed.footprint import estimate
from aed.outputs import OutputSpec, check_output, replacing
from aed.params import bounded, load_section
from aed.records import sha256_file, write_record
from aed.stedgeai import (
    StedgeaiError,
    StedgeaiNotFound,
    StedgeaiOptions,
    StedgeaiReportError,
    build_argv,
    find_stedgeai,
    parse_c_info,
    parse_text_report,
    run_stedgeai,
    tool_version,
)
from components.common import add_params_option


@dataclass
class ConvertParams:
    targets: dict[str, str] = field(
        default_factory=lambda: {"yamnet_256": "stm32u5", "yamnet_1024": "stm32n6"}
    )
    use_stedgeai: Literal["auto", "never", "require"] = "auto"
    stedgeai: str | None = None  # path to the executable; else $STEDGEAI_CORE_DIR, then PATH
    command: Literal["analyze", "generate"] = "generate"
    name: str = "network"
    compression: Literal["none", "lossless", "low", "medium", "high"] = "lossless"
    optimization: Literal["balanced", "time", "ram"] = "balanced"
    c_api: Literal["st-ai", "legacy"] = "st-ai"
    st_neural_art: str = "default"  # N6 profile, e.g. n6-noextmem@user_neuralart.json
    timeout_s: float = bounded(1800.0, 1.0)
    runtime_constants: Literal["2.0.0", "3.0.0"] = (
        "2.0.0"  # ST's published runtime overheads for the estimator
    )


def run(params: ConvertParams, model: Path, target: str, out_dir: Path, record_path: Path | None) -> dict:
    model, out_dir = Path(model), Path(out_dir)
    check_output(out_dir, OutputSpec("convert"), {"model": model})
    if not model.is_file():
        raise FileNotFoundError(f"{model}: model file not found")
    estimated = estimate(model, target, tool_version=params.runtime_constants)
    tool = None
    if params.use_stedgeai != "never":
        tool = find_stedgeai(Path(params.stedgeai) if params.stedgeai else None)
        if tool is None and params.use_stedgeai == "require":
            raise StedgeaiNotFound("convert.use_stedgeai is 'require' but no stedgeai was found "
                                   "(convert.stedgeai, $STEDGEAI_CORE_DIR or PATH)")  # fmt: skip
    # The directory always exists (a DVC / KFP output) but holds only the tool's files (and the output marker):
    # written aside and swapped in whole, only over an earlier convert output.
    with replacing(out_dir, OutputSpec("convert"), {"model": model}) as staging:
        figures = (
            _in_output(params, tool, model, target, staging, out_dir) if tool else _estimator_only(estimated)
        )
    figures["target"] = target
    figures["model_sha256"] = estimated["model_sha256"]
    figures["latency_ms"] = round(estimated["latency"]["ms"], 4)
    figures["latency_source"] = "estimator"
    figures["fits"] = estimated["budget"]["fits"]
    figures["estimator"] = (
        estimated  # the full estimate (per-layer table included), labelled source: estimator
    )
    if record_path is not None:
        write_record(record_path, "convert", figures, inputs={"model": model})
    return figures


def _in_output(
    params: ConvertParams, tool: Path, model: Path, target: str, staging: Path, out_dir: Path
) -> dict:
    """stedgeai run in the temporary folder, its paths reported where they will be. On a failure the folder is
    removed, so its log is kept beside the output, and the message points there."""
    try:
        figures = _with_stedgeai(params, tool, model, target, staging)
    except (StedgeaiError, StedgeaiReportError) as error:
        log = staging / "stedgeai.log"
        if not log.is_file():
            raise
        kept = out_dir.parent / f"{out_dir.name}.stedgeai-failed.log"
        shutil.copyfile(log, kept)
        raise type(error)(
            str(error).replace(str(log), str(kept)).replace(str(staging), str(out_dir))
        ) from error
    figures["argv"] = [argument.replace(str(staging), str(out_dir)) for argument in figures["argv"]]
    return figures


def _estimator_only(estimated: dict) -> dict:
    return {
        "source": "estimator",
        "tool_version": None,
        "weights_bytes": estimated["weights_bytes"],
        "activations_bytes": estimated["activations"]["improved_bytes"],
        "activations_tflm_bytes": estimated["activations"]["arena_tflm_bytes"],
        "macc": estimated["macs_total"],
        "generated_files": [],
    }


def _with_stedgeai(params: ConvertParams, tool: Path, model: Path, target: str, out_dir: Path) -> dict:
    version = tool_version(tool)
    options = StedgeaiOptions(
        target=target,
        name=params.name,
        compression=params.compression,
        optimization=params.optimization,
        c_api=params.c_api,
        st_neural_art=params.st_neural_art if target == "stm32n6" else None,
    )
    output, workspace = out_dir / "stedgeai", out_dir / "st_ai_ws"
    argv = build_argv(tool, params.command, model, options, output, workspace)
    env = dict(os.environ, STATS_TYPE=os.environ.get("STATS_TYPE", "aed_mlops"))
    result = run_stedgeai(argv, out_dir / "stedgeai.log", params.timeout_s, env)
    c_info_path = output / f"{params.name}_c_info.json"
    if not c_info_path.is_file():
        raise StedgeaiReportError(
            f"{c_info_path}: stedgeai exited 0 but wrote no c_info report (log: {result.log_path})"
        )
    c_info = parse_c_info(c_info_path)
    report_path = output / f"{params.name}_{params.command}_report.txt"
    text = parse_text_report(report_path) if report_path.is_file() else {}
    return {
        "source": "stedgeai",
        "tool_version": c_info.get("tool_version") or version,
        "tool_version_cli": version,
        "argv": argv[1:],
        "duration_s": round(result.duration_s, 3),
        "json_schema_version": c_info["json_schema_version"],
        "weights_bytes": c_info["weights_bytes"],
        "activations_bytes": c_info["activations_bytes"],
        "rom_bytes": c_info["rom_bytes"],
        "rom_formula": c_info["rom_formula"],
        "ram_bytes": c_info["ram_bytes"],
        "ram_formula": c_info["ram_formula"],
        "macc": c_info["macc"] if c_info["macc"] is not None else text.get("macc"),
        "null_fields": c_info["null_fields"],
        "internal_ram_bytes": c_info["internal_ram_bytes"],
        "external_ram_bytes": c_info["external_ram_bytes"],
        "text_report": {k: v for k, v in text.items() if k not in ("source",)},
        "generated_files": [
            {"name": str(path.relative_to(output)), "sha256": sha256_file(path)}
            for path in sorted(output.rglob("*"))
            if path.is_file()
        ],
    }


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert an int8 model with stedgeai (or estimate without it)"
    )
    add_params_option(parser)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--model-name", default=None, help="picks the target from convert.targets")
    parser.add_argument(
        "--target", choices=("stm32u5", "stm32n6"), default=None, help="overrides convert.targets"
    )
    parser.add_argument("--stedgeai", type=Path, default=None, help="path to the stedgeai executable")
    parser.add_argument(
        "--out", type=Path, required=True, help="directory for generated C files and the tool log"
    )
    parser.add_argument("--record", type=Path, required=True, help="the step's JSON record (a DVC metric)")
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    params = load_section(args.params, "convert", ConvertParams)
    if args.stedgeai is not None:
        params.stedgeai = str(args.stedgeai)
    target = args.target or params.targets.get(args.model_name or "")
    if target is None:
        raise ValueError(f"convert: no target for model '{args.model_name}'; set --target or convert.targets")
    record = run(params, args.model, target, args.out, args.record)
    print(f"convert: source={record['source']} target={target} weights={record['weights_bytes']:,} B "
          f"activations={record['activations_bytes']:,} B macc={record['macc']:,}")  # fmt: skip
    return 0
