"""Step `hil`: int8 model + evaluation patches -> one on-board record (source: board | virtual).

`aed hil run` runs the HIL job on a farm (virtual boards spawned for the job by default, a local inventory with lock
files, or labgrid places); `aed hil vboard` serves one virtual board on a pty or TCP port.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aed.params import bounded, load_section
from aed.patching import PatchParams
from components.common import add_params_option
from hil_runner.job import Farm

log = logging.getLogger(__name__)

SECTION = "hil"


@dataclass
class HilParams:
    profile: str = "b-u585i-iot02a"
    profiles: dict[str, str] | None = (
        None  # per model name, e.g. {yamnet_1024: stm32n6570-dk}; else `profile`
    )
    farm: Literal["virtual", "local", "labgrid"] = "virtual"
    virtual_boards: int = bounded(2, 1, 8)  # farm virtual: boards spawned for the job (one spare for retries)
    inventory: Path = Path("boards.yaml")  # farm local
    lock_dir: Path = Path("work/hil/locks")
    coordinator: str = "127.0.0.1:20408"  # farm labgrid
    lease_timeout_s: float = bounded(120.0, 1.0)
    split: str | None = None  # None: every split
    folds: list[int] | None = None  # None: every fold
    max_patches: int = bounded(0, 0)  # 0: every patch of the split (whole clips are kept)
    latency_repeats: int = bounded(20, 1)
    attempts: int = bounded(2, 1)
    timeout_scale: float = bounded(1.0, 0.05, 100.0)
    settle_s: float = bounded(0.4, 0.0, 5.0)
    verify_signature: bool = True
    firmware: Path | None = None  # validation firmware image for real boards
    baud: int = bounded(921600, 9600)
    virtual_link: Literal["pty", "tcp"] = "pty"  # farm virtual: tcp where the container has no /dev/pts
    workdir: Path = Path("work/hil")


def run(
    params: HilParams,
    patches_dir: Path,
    metrics_path: Path,
    model_path: Path | None = None,
    quantized_dir: Path | None = None,
    model_name: str | None = None,
    progress: bool = True,
    patch: PatchParams | None = None,
) -> dict:
    """Run the HIL job on the int8 model (a file, or the one .tflite in quantized_dir) and write the record to
    metrics_path; returns the record's metrics.

    patch: the params' `patch` section the patches were made with (None: its defaults); its front-end config
    hash goes into the record's key, so records of patches made differently are never compared."""
    from hil_runner.job import JobConfig, load_eval_set, run_job

    if Path(metrics_path).is_dir():
        raise ValueError(f"{metrics_path}: is a directory, expected the record's file path")
    model = resolve_model(model_path, quantized_dir)
    profile = (params.profiles or {}).get(model_name or "", params.profile)
    frontend = (patch or PatchParams()).feature_config()
    evalset = load_eval_set(patches_dir, params.split, params.max_patches, params.folds, frontend=frontend)
    config = JobConfig(
        profile=profile,
        latency_repeats=params.latency_repeats,
        attempts=params.attempts,
        timeout_scale=params.timeout_scale,
        settle_s=params.settle_s,
        verify_signature=params.verify_signature,
        firmware=params.firmware,
        progress=progress,
    )
    with _farm(params, profile) as farm:
        record = run_job(model, evalset, farm, config, metrics_path)
    return {"source": record["source"], "board": record["board"]["name"], **record["metrics"]}


def resolve_model(model_path: Path | None, quantized_dir: Path | None) -> Path:
    if model_path is not None:
        return Path(model_path)
    if quantized_dir is None:
        raise ValueError("hil: give a model file or the quantize step's output directory")
    directory = Path(quantized_dir)
    candidates = sorted(directory.glob("*.tflite")) or sorted(
        p for p in directory.glob("*.onnx") if not p.stem.endswith(("_float", "_prep"))
    )
    if len(candidates) != 1:
        raise ValueError(
            f"{quantized_dir}: expected exactly one int8 .tflite (or QDQ .onnx) for the (virtual) board, found "
            f"{[c.name for c in candidates]}"
        )
    return candidates[0]


@contextlib.contextmanager
def _farm(params: HilParams, profile: str) -> Iterator[Farm]:
    from hil_runner.farm.local import LocalFarm

    if params.farm == "labgrid":
        from hil_runner.farm.labgrid import LabgridFarm

        yield LabgridFarm(params.coordinator, wait_timeout=params.lease_timeout_s)
    elif params.farm == "local":
        from hil_runner.boards.inventory import load_inventory

        yield LocalFarm(load_inventory(params.inventory), params.lock_dir, params.lease_timeout_s)
    else:
        from hil_runner.farm.virtual import virtual_fleet

        slots = params.workdir / "slots"
        with virtual_fleet(
            profile, params.virtual_boards, slots, baud=params.baud, link=params.virtual_link
        ) as fleet:
            yield LocalFarm(fleet.boards, params.lock_dir, params.lease_timeout_s)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("hil", help="hardware-in-the-loop: run a model on (virtual) boards")
    commands = parser.add_subparsers(dest="hil_command", required=True, metavar="{run,vboard}")

    run_parser = commands.add_parser("run", help="run the HIL job and write one record")
    add_params_option(run_parser)
    source = run_parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="int8 .tflite model")
    source.add_argument("--quantized-dir", type=Path, help="directory holding exactly one int8 .tflite")
    run_parser.add_argument("--model-name", help="model name (selects hil.profiles[name])")
    run_parser.add_argument("--boards", help="board profile to run on (default: hil.profile)")
    run_parser.add_argument("--patches", type=Path, default=Path("artifacts/patches"), help="patch store")
    run_parser.add_argument("--out", type=Path, default=Path("reports/hil.json"), help="record to write")
    run_parser.add_argument("--farm", choices=["virtual", "local", "labgrid"], help="override hil.farm")
    run_parser.add_argument("--max-patches", type=int, help="override hil.max_patches")
    run_parser.add_argument("--no-progress", action="store_true")
    run_parser.set_defaults(handler=_run_main)

    from hil_runner.vboard.cli import add_arguments

    vboard_parser = commands.add_parser("vboard", help="serve a virtual board (prints READY <descriptor>)")
    add_arguments(vboard_parser)
    vboard_parser.set_defaults(handler=_vboard_main)


def _run_main(args: argparse.Namespace) -> int:
    params = load_section(args.params, "hil", HilParams)
    if args.boards:
        params.profile = args.boards
    if args.farm:
        params.farm = args.farm
    if args.max_patches is not None:
        if args.max_patches < 0:
            raise ValueError(f"--max-patches {args.max_patches}: expected 0 (all) or a positive count")
        params.max_patches = args.max_patches
    patch = load_section(args.params, "patch", PatchParams)
    metrics = run(params, args.patches, args.out, model_path=args.model, quantized_dir=args.quantized_dir,
                  model_name=args.model_name, progress=not args.no_progress, patch=patch)  # fmt: skip
    shown = ("source", "board", "top1_agreement", "clip_accuracy", "latency_median_ms", "weights_bytes",
             "activations_bytes")  # fmt: skip
    print(f"hil: {args.out}: " + ", ".join(f"{key}={metrics[key]}" for key in shown))
    return 0


def _vboard_main(args: argparse.Namespace) -> int:
    from hil_runner.vboard.cli import serve

    return serve(args)
