"""Step `calibrate`: the post-processing operating point of one model, chosen on soundscapes of TRAINING clips.

For each split with a held-out fold, soundscapes are built from the split's training clips only
(aed.detection.soundscapes) and scored by the split's own int8 model; over all of them, the grid point that meets
`calibrate.target_false_alarms_per_hour` with the fewest misses is taken (aed.detection.calibrate). No clip any
split tests on ever chooses the operating point.

Outputs:
    models/<model>/postprocess.json              the operating point (PostProcessParams fields); streaming
                                                 evaluation, export_firmware and `hil run --stream` read it
    artifacts/soundscapes/<model>/calibration/<split>-train  the soundscapes and their ground truth
    reports/<model>/calibrate.json               the record: the point, its false alarms per hour and miss rate
    params.yaml's `detect:` section              with --write-params only
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aed.params import load_section
from aed.patching import PatchParams
from components.common import add_model_name_option, add_params_option

# numpy / pandas come with aed.detection: imported where used, so that `aed --help` stays fast.
if TYPE_CHECKING:
    from aed.detection.calibrate import CalibrateParams
    from aed.detection.detect import DetectParams
    from aed.detection.streaming_eval import StreamingParams

_LAZY = {
    "CalibrateParams": "aed.detection.calibrate",
    "DetectParams": "aed.detection.detect",
    "StreamingParams": "aed.detection.streaming_eval",
}


def __getattr__(name: str) -> Any:
    """`run`'s annotation types on first use (PEP 562): their modules load numpy and pandas."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(
    params: CalibrateParams,
    streaming: StreamingParams,
    detect: DetectParams,
    patch: PatchParams,
    validated: Path,
    raw_dir: Path,
    float_dir: Path,
    int8_dir: Path,
    operating_point_path: Path,
    soundscapes_dir: Path,
    record_path: Path | None = None,
    params_file: Path | None = None,
) -> dict:
    """Chooses and writes the operating point (module docstring); returns the record's figures. With
    `params_file`, its `detect:` section is set to the point too (comments and other lines kept)."""
    from aed.artifacts import SPLITS_FILE
    from aed.detection import calibrate
    from aed.detection.streaming_eval import pooled, score_splits
    from aed.labels import background_classes
    from aed.outputs import check_file_outputs

    check_file_outputs({"--out": operating_point_path, "--record": record_path},
                       {"--validated": validated, "--raw-dir": raw_dir, "--int8-dir": int8_dir})  # fmt: skip
    if Path(operating_point_path).is_dir():
        raise IsADirectoryError(
            f"--out {operating_point_path}: is a folder, expected the operating point file"
        )
    started = time.perf_counter()
    scored, class_names = score_splits(validated, raw_dir, Path(float_dir) / SPLITS_FILE, int8_dir,
                                       soundscapes_dir, "train", streaming, detect, patch.feature_config())  # fmt: skip
    every = pooled(scored)
    choice = calibrate.choose(every, params, streaming.collar_s, background_classes(class_names))
    point = calibrate.operating_point_dict(choice.point)
    calibrate.write_operating_point(Path(operating_point_path), choice.point)
    if params_file is not None:
        calibrate.update_params_section(Path(params_file), "detect", point)
    figures = {
        "operating_point": point,
        "target_false_alarms_per_hour": params.target_false_alarms_per_hour,
        "meets_target": choice.meets_target,
        "false_alarms_per_hour": choice.false_alarms_per_hour,
        "miss_rate": choice.miss_rate,
        "points_tried": choice.tried,
        "soundscapes": {"splits": sorted(scored), "part": "train (each split's training clips)",
                        "files": len(every.durations), "hours": round(every.hours, 4),
                        "events": len(every.truth)},
        "source": "host int8 model of each split (aed detect's front end and scorer)",
        "seconds": round(time.perf_counter() - started, 2),
    }  # fmt: skip
    if record_path is not None:
        from aed.records import write_record

        write_record(Path(record_path), "calibrate", figures, {"splits": Path(float_dir) / SPLITS_FILE})
    return figures


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate", help="post-processing meeting a false-alarm budget with the fewest misses"
    )
    add_params_option(parser)
    add_model_name_option(parser, help="the model to calibrate, e.g. yamnet_256")
    parser.add_argument("--validated", type=Path, default=Path("artifacts/validated.csv"))
    parser.add_argument("--raw-dir", type=Path, default=Path("data/raw"))
    parser.add_argument("--models-root", type=Path, default=Path("models"))
    parser.add_argument("--soundscapes", type=Path, default=None,
                        help="folder for the calibration soundscapes (default artifacts/soundscapes/<model>/calibration)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None,
                        help="operating point file (default <models-root>/<model>/postprocess.json)")  # fmt: skip
    parser.add_argument(
        "--record", type=Path, default=None, help="record (default reports/<model>/calibrate.json)"
    )
    parser.add_argument("--write-params", action="store_true",
                        help="also set params.yaml's detect: section to the operating point")  # fmt: skip
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    from aed.artifacts import OPERATING_POINT_FILE
    from aed.detection.calibrate import CalibrateParams
    from aed.detection.detect import DetectParams
    from aed.detection.streaming_eval import StreamingParams

    name, root = args.model_name, Path(args.models_root)
    figures = run(
        load_section(args.params, "calibrate", CalibrateParams),
        load_section(args.params, "streaming", StreamingParams),
        load_section(args.params, "detect", DetectParams),
        load_section(args.params, "patch", PatchParams),
        args.validated, args.raw_dir, root / name / "float", root / name / "int8",
        args.out or root / name / OPERATING_POINT_FILE,
        args.soundscapes or Path("artifacts/soundscapes") / name / "calibration",
        args.record or Path("reports") / name / "calibrate.json",
        args.params if args.write_params else None,
    )  # fmt: skip
    met = "meets" if figures["meets_target"] else "does NOT meet"
    print(f"calibrate {name}: {figures['operating_point']} {met} the target "
          f"({figures['false_alarms_per_hour']:.2f} false alarms per hour <= "
          f"{figures['target_false_alarms_per_hour']:g}), miss rate {figures['miss_rate']}")  # fmt: skip
    return 0
