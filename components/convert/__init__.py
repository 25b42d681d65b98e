"""Step `convert`: int8 model -> STM32 C code and footprint with `stedgeai` when installed, else the estimator;
and/or (convert.runtime tflm | both) a TensorFlow Lite Micro deployment with the improved memory plan embedded.

The record says which one produced its figures (`source: stedgeai | estimator | tflm`); the estimator's figures
are always included (labelled) so they can be compared whenever a tool ran. The TFLM part writes
`<model>_tflm.tflite`, the measured arena and its C header, and proves the plan inside the step on the patch
store: bit-exact with the unplanned model at exactly that arena, and one alignment step less fails to allocate.
That proof uses TFLM's reference kernels, not CMSIS-NN (aed.footprint.tflm). ONNX QDQ models get the estimate
only.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path
from typing import Any

from aed.dvc_metrics import convert_figures, write_figures
from aed.footprint import estimate
from aed.outputs import OutputSpec, check_file_outputs, check_output, replacing
from aed.params import load_section
from aed.records import sha256_file, write_record
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
    patches: Path | None = None,
    model_name: str | None = None,
) -> dict:
    """The footprint record to record_path; with dvc_metrics_path, its compared figures (flash, RAM, latency)
    also to that file, the one dvc.yaml lists under `metrics:`. `patches` (a patch store) is what the TFLM proof
    runs on; `model_name` names the TFLM files (default: the model file's stem)."""
    model, out_dir = Path(model), Path(out_dir)
    sources = {"model": model, "--patches": patches}
    check_output(out_dir, OutputSpec("convert"), sources)
    check_file_outputs(
        {"--record": record_path, "--dvc-metrics": dvc_metrics_path}, {**sources, "--out": out_dir}
    )
    if not model.is_file():
        raise FileNotFoundError(f"{model}: model file not found")
    # the model is parsed first (a broken file is named before anything else is asked for)
    estimated = estimate(
        model, target, tool_version=params.runtime_constants, calibration=params.estimator_calibration
    )
    tflm_applies = params.runtime != "stedgeai" and model.suffix.lower() == ".tflite"
    store = _proof_store(patches, params) if tflm_applies else None  # refused before the work, not after it
    tool = locate_tool(params) if params.runtime != "tflm" else None
    # The directory always exists (a DVC / KFP output) but holds only the tools' files (and the output marker):
    # written aside and swapped in whole, only over an earlier convert output.
    with replacing(out_dir, OutputSpec("convert"), sources) as staging:
        figures = (
            _in_output(params, tool, model, target, staging, out_dir)
            if tool
            else estimator_figures(estimated)
        )
        tflm = (
            _tflm_in_output(params, model, model_name or model.stem, store, staging)
            if store is not None
            else _tflm_not_applied(params, model)
        )
    record = conversion_record(figures, target, estimated).to_dict()
    record = {**record, **_tflm_top_level(params, tflm, record), "runtime": params.runtime, "tflm": tflm}
    if record_path is not None:
        write_record(record_path, "convert", record, inputs=_inputs(model, patches if tflm_applies else None))
    if dvc_metrics_path is not None:
        # the TFLM arena and proof stay in the record (and the gate): two more columns would take
        # `dvc metrics show` past 160 characters (tests/test_reports.py)
        write_figures(dvc_metrics_path, convert_figures(record))
    return record


def _inputs(model: Path, patches: Path | None) -> dict[str, Path]:
    return {"model": model, "patches": patches} if patches is not None else {"model": model}


def _proof_store(patches: Path | None, params: ConvertParams) -> Any:
    from aed.patchstore import load_patch_store

    if patches is None:
        raise ValueError(
            f"convert.runtime is '{params.runtime}': give --patches (the patch store the TFLM proof runs on), "
            "or set convert.runtime: stedgeai"
        )
    return load_patch_store(Path(patches))


def _proof_patches(store: Any, count: int) -> Any:
    """Every patch of the store, or a seeded sample of `count` (in store order)."""
    import numpy as np

    rows = store.index
    if 0 < count < len(rows):
        chosen = np.sort(np.random.default_rng(0).choice(len(rows), size=count, replace=False))
        rows = rows.iloc[chosen]
    if not len(rows):
        raise ValueError(f"{store.root}: the patch store holds no patches to prove the TFLM plan on")
    return store.patches(rows)


def _tflm_in_output(params: ConvertParams, model: Path, name: str, store: Any, staging: Path) -> dict:
    from aed.footprint.tflm_proof import arena_header, deploy

    planned = staging / f"{name}_tflm.tflite"
    tflm = deploy(model, planned, _proof_patches(store, params.tflm_proof_patches), params.tflm_jobs)
    header = staging / f"{name}_tflm_arena.h"
    header.write_text(arena_header(name, tflm))
    return {**tflm, "header_file": header.name, "header_sha256": sha256_file(header)}


def _tflm_not_applied(params: ConvertParams, model: Path) -> dict:
    if params.runtime == "stedgeai":
        return {"status": "not requested (convert.runtime: stedgeai)"}
    return {
        "status": f"not applicable: {model.suffix} model; the TFLM runtime takes int8 .tflite models, so an ONNX "
        "QDQ model gets the estimate only (no offline plan, no measured arena, no proof)",
    }


def _tflm_top_level(params: ConvertParams, tflm: dict, record: dict) -> dict:
    """With runtime tflm alone, the record's own figures are TFLM's: its measured arena is the RAM figure."""
    if params.runtime != "tflm" or not tflm.get("arena"):
        return {}
    return {
        "source": "tflm",
        "tool_version": tflm["tflite_micro_version"],
        "activations_bytes": tflm["arena"]["arena_bytes"],
        "activations_tflm_bytes": tflm["unplanned_arena"]["arena_bytes"],
        "activations_source": "tflm (measured with the reference kernels; " + tflm["verified_with"] + ")",
        "weights_source": "estimator",
        "generated_files": [
            {"name": tflm["model_file"], "sha256": tflm["model_sha256"]},
            {"name": tflm["header_file"], "sha256": tflm["header_sha256"]},
        ],
    }


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
    parser.add_argument(
        "--patches",
        type=Path,
        default=None,
        help="patch store the TFLM proof runs on (convert.runtime tflm | both)",
    )
    parser.add_argument(
        "--runtime", choices=("stedgeai", "tflm", "both"), default=None, help="overrides convert.runtime"
    )
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    params = load_section(args.params, "convert", ConvertParams)
    if args.stedgeai is not None:
        params = dataclasses.replace(params, stedgeai=str(args.stedgeai))
    if args.runtime is not None:
        params = dataclasses.replace(params, runtime=args.runtime)
    if args.target is None and args.model_name is None:
        raise ValueError("convert: give --model-name (its target is read from convert.targets) or --target")
    target = args.target or params.target_for(args.model_name)
    record = run(
        params, args.model, target, args.out, args.record, args.dvc_metrics, args.patches, args.model_name
    )
    print(f"convert: source={record['source']} target={target} weights={record['weights_bytes']:,} B "
          f"activations={record['activations_bytes']:,} B macc={record['macc']:,}")  # fmt: skip
    _print_tflm(record["tflm"])
    return 0


def _print_tflm(tflm: dict) -> None:
    if "arena" not in tflm:
        if not tflm["status"].startswith("not requested"):
            print(f"convert: tflm {tflm['status']}")
        return
    proof = tflm["proof"]
    print(f"convert: tflm {tflm['model_file']} arena={tflm['arena']['arena_bytes']:,} B (unplanned "
          f"{tflm['unplanned_arena']['arena_bytes']:,} B, -{tflm['arena_saving_pct']} %) proof="
          f"{'passed' if proof['passed'] else 'FAILED'} ({proof['bit_exact']['inputs']} patches bit-exact: "
          f"{proof['bit_exact']['bit_exact']}, one step smaller fails: {proof['tight']['one_step_smaller_fails']}); "
          "verified with TFLM's reference kernels, not CMSIS-NN")  # fmt: skip
