"""Step `hil`: int8 model + evaluation patches -> one on-board record (source: board | virtual).

`aed hil run` runs the HIL job on a farm (virtual boards spawned for the job by default, a local inventory with lock
files, or labgrid places); `aed hil run --stream RECORDING` feeds a recording's patches to a board of the same farm
in order, post-processes the board's outputs as host detect does and records both event lists
(hil_runner.stream); `aed hil vboard` serves one virtual board on a pty or TCP port.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aed.artifacts import OPERATING_POINT_FILE
from aed.dvc_metrics import hil_figures, write_figures
from aed.outputs import check_file_outputs
from aed.params import load_section
from aed.patching import PatchParams
from components.common import add_params_option, known_model_name
from hil_runner.boards.profiles import PROFILES

# pandas and the board protocol come with hil_runner.job: imported where used, so that `aed --help` stays fast.
if TYPE_CHECKING:
    from aed.detection.detect import DetectParams
    from hil_runner.job import Farm, HilParams, JobConfig

log = logging.getLogger(__name__)

SECTION = "hil"
GROUND_TRUTH_FILE = "ground_truth.csv"  # in a soundscape set folder (aed.detection.soundscapes)
# The calibrated operating point (`aed calibrate`: models/<model>/postprocess.json), looked for above the int8 file
# (models/<model>/int8/<split>/<file>) when --operating-point is not given.


def __getattr__(name: str) -> Any:
    """HilParams on first use (PEP 562): its module loads pandas."""
    if name == "HilParams":
        from hil_runner.job import HilParams

        return HilParams
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(
    params: HilParams,
    patches_dir: Path,
    model_path: Path | None,
    quantized_dir: Path | None,
    record_path: Path,
    *,
    model_name: str | None = None,
    progress: bool = True,
    patch: PatchParams | None = None,
    dvc_metrics_path: Path | None = None,
) -> dict:
    """Run the HIL job on the int8 model (model_path, or the one int8 model in quantized_dir) and write the
    record to record_path; returns the record's metrics.

    model_name selects `hil.profiles[model_name]` as the board profile. patch: the params' `patch` section the
    patches were made with (None: its defaults); its front-end config hash goes into the record's key, so records
    of patches made differently are never compared. dvc_metrics_path: where to write the record's compared
    figures (accuracy, agreement, latency, RAM, flash), the file dvc.yaml lists under `metrics:`."""
    from hil_runner.job import JobConfig, load_eval_set, run_job

    if Path(record_path).is_dir():
        raise ValueError(f"{record_path}: is a directory, expected the record's file path")
    if dvc_metrics_path is not None and Path(dvc_metrics_path).is_dir():
        raise ValueError(f"--dvc-metrics {dvc_metrics_path}: is a directory, expected a file path")
    check_file_outputs({"--dvc-metrics": dvc_metrics_path}, {"--out": record_path, "--patches": patches_dir})
    model = resolve_model(model_path, quantized_dir)
    config = JobConfig.for_model(params, model_name, progress=progress)
    frontend = (patch or PatchParams()).feature_config()
    evalset = load_eval_set(patches_dir, params.split, params.max_patches, params.folds, frontend=frontend)
    with _farm(config) as farm:
        record = run_job(model, evalset, farm, config, record_path)
    if dvc_metrics_path is not None:
        write_figures(dvc_metrics_path, hil_figures(record))
    return {"source": record["source"], "board": record["board"]["name"], **record["metrics"]}


def run_stream(
    params: HilParams,
    recording: Path,
    model_path: Path | None,
    quantized_dir: Path | None,
    record_path: Path,
    *,
    patches_dir: Path | None = None,
    class_names: list[str] | None = None,
    model_name: str | None = None,
    progress: bool = True,
    patch: PatchParams | None = None,
    detect: DetectParams | None = None,
    operating_point: Path | None = None,
    truth: Path | None = None,
) -> dict:
    """Stream `recording` through a board of the farm and write the stream record; returns its metrics.

    The classes are the patch store's (patches_dir), else class_names (validate.classes). The post-processing is
    the calibrated operating point (operating_point, a JSON file of PostProcessParams fields) when given, else
    the `detect` section; hop_s always comes from `detect`. truth: a DCASE ground-truth table for the event
    metrics."""
    from aed.labels import background_classes
    from hil_runner.job import JobConfig

    try:
        from hil_runner.stream import StreamSpec, host_stream, run_stream_job
    except ImportError as error:  # the hil image: the stream check is the hil_stream task, in the train image
        raise ValueError(
            f"hil run --stream needs the package {error.name!r}, which this environment lacks (the hil image): "
            "run it in the train image, as the hil_stream task does"
        ) from None

    if Path(record_path).is_dir():
        raise ValueError(f"{record_path}: is a directory, expected the record's file path")
    given = Path(recording)
    recording, truth = stream_source(given, truth)
    model = resolve_model(model_path, quantized_dir)
    # the record never overwrites an input, nor lands in the patch store or the soundscape folder
    check_file_outputs({"--out": record_path}, {"--stream": given, "--model": model, "--truth": truth,
                                                "--patches": patches_dir})  # fmt: skip
    operating_point = operating_point or calibrated_point(model)
    classes = _stream_classes(patches_dir, class_names)
    spec = StreamSpec(
        recording=recording,
        class_names=classes,
        frontend=(patch or PatchParams()).feature_config(),
        detect=_operating_point(detect or _default_detect(), operating_point),
        background=tuple(background_classes(classes)),
        truth=truth,
    )
    config = JobConfig.for_model(params, model_name, progress=progress)
    host = host_stream(model, spec)  # bad input fails here, before a board is leased
    with _farm(config) as farm:
        record = run_stream_job(host, spec, farm, config, record_path)
    return {"source": record["source"], "board": record["board"]["name"], **record["metrics"]}


def calibrated_point(model: Path) -> Path | None:
    """The nearest postprocess.json above the int8 model file, up to its model folder; None when there is none."""
    for folder in Path(model).parents[:3]:
        if (folder / OPERATING_POINT_FILE).is_file():
            return folder / OPERATING_POINT_FILE
    return None


def stream_source(recording: Path, truth: Path | None) -> tuple[Path, Path | None]:
    """(recording, ground truth): a file as given; a soundscape set folder gives its first recording (in natural
    order: eval-2 before eval-10) and, unless one is given, its ground_truth.csv; a folder of sets (one per
    split, as `aed evaluate --streaming` writes them) its first set's."""
    if recording.is_file():
        return recording, truth
    if not recording.is_dir():
        raise ValueError(f"--stream {recording}: file not found")
    from aed.datasets.layouts import AUDIO_EXTENSIONS

    sets = sorted((p for p in recording.iterdir() if (p / GROUND_TRUTH_FILE).is_file()), key=_natural)
    if not (recording / GROUND_TRUTH_FILE).is_file() and sets:
        return stream_source(sets[0], truth)
    audio = sorted((p for p in recording.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()),
                   key=_natural)  # fmt: skip
    if not audio:
        raise ValueError(
            f"--stream {recording}: a folder without audio; give a recording or a soundscape folder"
        )
    set_truth = recording / GROUND_TRUTH_FILE
    return audio[0], truth if truth is not None else (set_truth if set_truth.is_file() else None)


def _natural(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _default_detect() -> DetectParams:
    from aed.detection.detect import DetectParams

    return DetectParams()


def _stream_classes(patches_dir: Path | None, class_names: list[str] | None) -> list[str]:
    """The model's output order: the patch store's classes when there is a store, else validate.classes."""
    if patches_dir is not None and Path(patches_dir).is_dir():
        from aed.patchstore import load_patch_store

        return list(load_patch_store(Path(patches_dir)).class_names)
    if class_names:
        from aed.patching import class_order

        return class_order((), class_names)
    raise ValueError(
        f"--patches {patches_dir}: no patch store to take the model's classes from, and validate.classes is empty"
    )


def _operating_point(detect: DetectParams, path: Path | None) -> DetectParams:
    """`detect` with the post-processing of the calibrated operating point file, when one is given."""
    if path is None:
        return detect
    from aed.detection.postprocess import load_operating_point

    return dataclasses.replace(detect, **load_operating_point(Path(path)).postprocess_fields())


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
def _farm(config: JobConfig) -> Iterator[Farm]:
    """The farm the `hil` settings name, with boards of the job's profile."""
    from hil_runner.farm.local import LocalFarm

    if config.farm == "labgrid":
        from hil_runner.farm.labgrid import LabgridFarm

        yield LabgridFarm(config.coordinator, wait_timeout=config.lease_timeout_s)
    elif config.farm == "local":
        from hil_runner.boards.inventory import load_inventory

        yield LocalFarm(load_inventory(config.inventory), config.lock_dir, config.lease_timeout_s)
    else:
        from hil_runner.farm.virtual import virtual_fleet

        slots = config.workdir / "slots"
        with virtual_fleet(
            config.profile, config.virtual_boards, slots, baud=config.baud, link=config.virtual_link
        ) as fleet:
            yield LocalFarm(fleet.boards, config.lock_dir, config.lease_timeout_s)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("hil", help="hardware-in-the-loop: run a model on (virtual) boards")
    commands = parser.add_subparsers(dest="hil_command", required=True, metavar="{run,vboard}")

    run_parser = commands.add_parser("run", help="run the HIL job and write one record")
    add_params_option(run_parser)
    source = run_parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="int8 .tflite model")
    source.add_argument("--quantized-dir", type=Path, help="directory holding exactly one int8 .tflite")
    run_parser.add_argument(
        "--model-name", type=known_model_name, help="model name (selects hil.profiles[name])"
    )
    run_parser.add_argument("--boards", help="board profile to run on (default: hil.profile)")
    run_parser.add_argument("--patches", type=Path, default=Path("artifacts/patches"), help="patch store")
    run_parser.add_argument("--out", type=Path, default=Path("reports/hil.json"), help="record to write")
    run_parser.add_argument(
        "--dvc-metrics", type=Path, default=None, help="JSON of the compared figures only (a DVC metric)"
    )
    run_parser.add_argument("--farm", choices=["virtual", "local", "labgrid"], help="override hil.farm")
    run_parser.add_argument("--max-patches", type=int, help="override hil.max_patches")
    run_parser.add_argument("--no-progress", action="store_true")
    stream = run_parser.add_argument_group("streaming (--stream): a recording through the board, then events")
    stream.add_argument(
        "--stream", type=Path, metavar="RECORDING", help="feed this recording's patches to the board in order"
    )
    stream.add_argument(
        "--operating-point", type=Path, help="calibrated post-processing JSON (default: the `detect` section)"
    )
    stream.add_argument("--truth", type=Path, help="ground-truth events (DCASE CSV) for the event metrics")
    run_parser.set_defaults(handler=_run_main)

    from hil_runner.vboard.cli import add_arguments

    vboard_parser = commands.add_parser("vboard", help="serve a virtual board (prints READY <descriptor>)")
    add_arguments(vboard_parser)
    vboard_parser.set_defaults(handler=_vboard_main)


def _run_main(args: argparse.Namespace) -> int:
    from hil_runner.job import HilParams

    params = dataclasses.replace(load_section(args.params, SECTION, HilParams), **_cli_overrides(args))
    patch = load_section(args.params, "patch", PatchParams)
    if args.stream is not None:
        return _stream_main(args, params, patch)
    for option in ("operating_point", "truth"):
        if getattr(args, option) is not None:
            raise ValueError(f"--{option.replace('_', '-')} only applies with --stream RECORDING")
    metrics = run(params, args.patches, args.model, args.quantized_dir, args.out, model_name=args.model_name,
                  progress=not args.no_progress, patch=patch, dvc_metrics_path=args.dvc_metrics)  # fmt: skip
    shown = ("source", "board", "top1_agreement", "clip_accuracy", "latency_median_ms", "weights_bytes",
             "activations_bytes")  # fmt: skip
    print(f"hil: {args.out}: " + ", ".join(f"{key}={metrics[key]}" for key in shown))
    return 0


def _stream_main(args: argparse.Namespace, params: HilParams, patch: PatchParams) -> int:
    from aed.detection.detect import DetectParams
    from aed.validation.validate import ValidateParams
    from hil_runner.stream import stream_summary

    if args.dvc_metrics is not None:
        raise ValueError(
            "--dvc-metrics does not apply with --stream (the stream record's metrics are its own)"
        )
    detect = load_section(args.params, "detect", DetectParams)
    classes = load_section(args.params, "validate", ValidateParams).classes
    out = args.out if args.out != Path("reports/hil.json") else Path("reports/hil_stream.json")
    metrics = run_stream(params, args.stream, args.model, args.quantized_dir, out, patches_dir=args.patches,
                         class_names=classes, model_name=args.model_name, progress=not args.no_progress,
                         patch=patch, detect=detect, operating_point=args.operating_point, truth=args.truth)  # fmt: skip
    print(f"hil: {out}: {stream_summary(metrics)}")
    return 0


def _cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The `hil` settings given on the command line (--boards, --farm, --max-patches)."""
    overrides: dict[str, Any] = {}
    if args.boards:
        if args.boards not in PROFILES:
            raise ValueError(f"--boards {args.boards!r}: unknown board profile; known: {sorted(PROFILES)}")
        overrides["profile"] = args.boards
    if args.farm:
        overrides["farm"] = args.farm
    if args.max_patches is not None:
        if args.max_patches < 0:
            raise ValueError(f"--max-patches {args.max_patches}: expected 0 (all) or a positive count")
        overrides["max_patches"] = args.max_patches
    return overrides


def _vboard_main(args: argparse.Namespace) -> int:
    from hil_runner.vboard.cli import serve

    return serve(args)
