"""Step `evaluate`: test-fold clip / patch accuracy of every model, float (Keras) and int8 (LiteRT reference
kernels for .tflite, onnxruntime for QDQ .onnx), plus float-vs-int8 agreement, per-class report and confusion.

Outputs:
    reports/metrics.json                        per model and format, clip_accuracy (per split and mean),
                                                patch_accuracy, n_clips, split; int8 agreement
    reports/metrics/evaluate/<model>.json       DVC metrics (--dvc-metrics-dir): the compared figures only
                                                (aed.dvc_metrics.evaluation_figures)
    reports/<model>/evaluation.json             per-class precision / recall / F1, confusion matrices
    reports/<model>/confusion_<format>.json     DVC confusion plot rows (all test folds together)
    reports/<model>/confusion_<format>.png

With --streaming (one model; aed.detection.streaming_eval, docs/detection.md): each split's int8 model runs as
`aed detect` does over seeded soundscapes of its held-out clips, post-processed at the model's calibrated operating
point (models/<model>/postprocess.json, else params.yaml's detect: section), and is scored against their ground truth:
    artifacts/soundscapes/<model>/evaluation/<split>-test: the soundscapes and their DCASE ground truth
    reports/<model>/streaming.json              event F1, error rate, PSDS, false alarms per hour, miss rate,
                                                onset / offset error: per split, mean, and per class
    reports/metrics/stream_<model>.json         DVC metrics (--dvc-metrics): the mean event F1 (ev_f1), false
                                                alarms per hour (fa_h) and miss rate (miss) of the host int8 models
    reports/<model>/streaming_det.json          DVC plot: per class, false alarms per hour against miss rate
                                                along the threshold sweep (a DET curve)
    reports/<model>/streaming_scores.json       DVC plot: a score-over-time example (its first soundscape)
    reports/<model>/streaming_{det,scores}.png  the same two as images (per-class DET curves; scores, events)
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aed.dvc_metrics import EVALUATION_FIGURES, evaluation_figures, write_figures
from aed.models.config import ModelsParams
from aed.outputs import check_file_outputs, publishing
from aed.params import load_section
from aed.patching import PatchParams
from aed.records import write_json, write_record
from components.common import add_model_name_option, add_params_option

# pandas and the model runners come with aed.evaluation: imported where used, so that `aed --help` stays fast.
if TYPE_CHECKING:
    from aed.detection.detect import DetectParams
    from aed.detection.streaming_eval import StreamingParams
    from aed.evaluation import EvaluateParams, ModelFolders


def __getattr__(name: str) -> Any:
    """`run`'s annotation types on first use (PEP 562): their module loads pandas."""
    if name in ("EvaluateParams", "ModelFolders"):
        from aed import evaluation

        return getattr(evaluation, name)
    if name in ("DetectParams", "StreamingParams"):  # run_streaming's (numpy, pandas)
        from aed.detection import detect, streaming_eval

        return getattr(detect if name == "DetectParams" else streaming_eval, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


log = logging.getLogger(__name__)


def run(
    params: EvaluateParams,
    patches_dir: Path,
    models: list[ModelFolders],
    reports_root: Path,
    record_path: Path | None = None,
    dvc_metrics_dir: Path | None = None,
) -> dict:
    """Evaluate each model of `models`; reports go to <reports_root>/<model>/, the figures of every model to
    `record_path` (default <reports_root>/metrics.json) and the step's record to <reports_root>/evaluate.json.
    With `dvc_metrics_dir`, each model's compared figures also go to <dvc_metrics_dir>/<model>.json."""
    from aed.evaluation import evaluate_model, write_reports
    from aed.patchstore import load_patch_store

    names = [folders.name for folders in models]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:  # the second would overwrite the first's reports and figures
        raise ValueError(f"evaluate: model(s) {twice} given more than once")
    if dvc_metrics_dir is not None and Path(dvc_metrics_dir).exists() and not Path(dvc_metrics_dir).is_dir():
        raise ValueError(f"--dvc-metrics-dir {dvc_metrics_dir}: is a file, expected a folder")
    check_file_outputs({"--dvc-metrics-dir": dvc_metrics_dir}, {"--patches": patches_dir})
    store = load_patch_store(patches_dir)
    started = time.perf_counter()
    metrics = {}
    for folders in models:
        evaluation = evaluate_model(store, folders, params)
        # reports/<model> is shared with train's histories: the files are written aside and moved in together.
        with publishing(Path(reports_root) / folders.name) as staged:
            write_reports(evaluation, staged)
        metrics[folders.name] = evaluation.metrics()
        log.info(
            "evaluate %s: %s",
            folders.name,
            {f: m.get("clip_accuracy", {}).get("mean") for f, m in metrics[folders.name].items()},
        )
    write_json(Path(record_path or Path(reports_root) / "metrics.json"), metrics)
    write_record(
        Path(reports_root) / "evaluate.json",
        "evaluate",
        {"seconds": round(time.perf_counter() - started, 2), "metrics": metrics},
        {f"{folders.name}_splits": folders.splits_file for folders in models},
    )
    if dvc_metrics_dir is not None:
        _write_dvc_metrics(Path(dvc_metrics_dir), metrics)
    return metrics


# The streaming figures DVC compares, under short keys: `dvc metrics show` must fit 160 columns with every step's
# figures (tests/test_reports.py), which leaves room for three: the mean over splits of the event-based F1
# (`ev_f1`), the false alarms per hour (`fa_h`) and the miss rate (`miss`). PSDS, the error rate, onset / offset
# errors and the per-fold figures are in reports/<model>/streaming.json. The file is named stream_<model>.json;
# its source, the host int8 models (never a board), is said in that record.
STREAMING_FIGURES = {"event_f1": ("ev_f1", 3), "false_alarms_per_hour": ("fa_h", 1), "miss_rate": ("miss", 3)}


def streaming_figures(mean: dict) -> dict:
    """The compact DVC figures of a streaming record's mean (rounded: a re-run that changes nothing shows nothing)."""
    return {short: None if mean.get(key) is None else round(float(mean[key]), digits)
            for key, (short, digits) in STREAMING_FIGURES.items()}  # fmt: skip


def run_streaming(
    streaming: StreamingParams,
    detect: DetectParams,
    patch: PatchParams,
    model_name: str,
    validated: Path,
    raw_dir: Path,
    float_dir: Path,
    int8_dir: Path,
    soundscapes_dir: Path,
    reports_root: Path,
    operating_point: Path | None = None,
    dvc_metrics_path: Path | None = None,
) -> dict:
    """Streaming evaluation of one model (module docstring); returns its record's figures."""
    from aed.artifacts import SPLITS_FILE
    from aed.detection.calibrate import operating_point_dict
    from aed.detection.postprocess import load_operating_point
    from aed.detection.streaming_eval import (
        evaluate_scored,
        mean_figures,
        pooled,
        score_splits,
    )
    from aed.labels import background_classes

    started = time.perf_counter()
    calibrated = operating_point is not None  # given: it must be there (no silent fallback to params.yaml)
    point = load_operating_point(Path(operating_point)) if calibrated else detect.postprocess()
    scored, class_names = score_splits(validated, raw_dir, Path(float_dir) / SPLITS_FILE, int8_dir,
                                       soundscapes_dir, "test", streaming, detect, patch.feature_config())  # fmt: skip
    background = background_classes(class_names)
    per_split = {name: evaluate_scored(each, point, streaming, background) for name, each in scored.items()}
    every = evaluate_scored(pooled(scored), point, streaming, background)
    source = (
        f"host, int8 model of each split ({_int8_kind(int8_dir, sorted(scored)[0])}), aed detect's front end"
    )
    figures = {
        "source": source,
        "operating_point": operating_point_dict(point),
        "operating_point_from": str(operating_point)
        if calibrated
        else "params.yaml detect: (not calibrated)",
        "mean": mean_figures({name: result["figures"] for name, result in per_split.items()}),
        "splits": {name: result["figures"] for name, result in per_split.items()},
        "all_splits": every["figures"],
        "per_class": every["per_class"],
        "seconds": round(time.perf_counter() - started, 2),
    }
    folder = Path(reports_root) / model_name
    write_record(
        folder / "streaming.json", "evaluate_streaming", figures, {"splits": Path(float_dir) / SPLITS_FILE}
    )
    write_json(folder / "streaming_det.json", [row for row in every["det"] if row["miss_rate"] is not None])
    first = sorted(scored)[0]
    write_json(folder / "streaming_scores.json", _score_rows(scored[first], per_split[first]["events"]))
    _write_pngs(folder, scored[first], every["det"], point, background)
    if dvc_metrics_path is not None:
        write_figures(Path(dvc_metrics_path), streaming_figures(figures["mean"]))
    return figures


def _write_pngs(folder: Path, example: Any, det: list[dict], point: Any, background: list[str]) -> None:
    """streaming_det.png (per-class DET) and streaming_scores.png (the first soundscape's scores and events)."""
    from aed.detection.detect import Detection
    from aed.detection.plot import save_scores_png
    from aed.detection.postprocess import detect_events
    from aed.detection.streaming_eval import save_det_png

    save_det_png(det, folder / "streaming_det.png")
    name = sorted(example.durations)[0]
    starts, scores = example.starts_s[name], example.scores[name]
    events = detect_events(scores, starts, example.window_s, example.class_names, point, name, background)
    shown = Detection(events, starts, scores, example.window_s, name, example.durations[name])
    save_scores_png(shown, example.class_names, point, folder / "streaming_scores.png", background)


def _int8_kind(int8_dir: Path, split: str) -> str:
    from aed.detection.streaming_eval import split_model

    return split_model(int8_dir, split).name


def _score_rows(scored: Any, events: Any) -> list[dict]:
    """The first soundscape's scores over time, for the classes of its ground truth and its detections."""
    name = sorted(scored.durations)[0]
    truth = scored.truth[scored.truth["filename"] == name]
    shown = set(truth["event_label"]) | set(events[events["filename"] == name]["event_label"])
    rows = []
    for column, label in enumerate(scored.class_names):
        if label in shown:
            rows.extend({"file": name, "class": label, "time_s": round(float(t), 3), "score": round(float(v), 4)}
                        for t, v in zip(scored.starts_s[name], scored.scores[name][:, column], strict=True))  # fmt: skip
    return rows


def _write_dvc_metrics(folder: Path, metrics: dict) -> None:
    """One file per model; DVC lists every file of the folder, so figures an earlier run wrote for another model
    are removed (only files holding nothing but evaluate's figures: anything else is not ours)."""
    figures = {name: evaluation_figures(model_metrics) for name, model_metrics in metrics.items()}
    for path in folder.glob("*.json") if folder.is_dir() else []:
        if path.stem not in figures and _holds_only_evaluation_figures(path):
            path.unlink()
    for name, values in figures.items():
        write_figures(folder / f"{name}.json", values)


def _holds_only_evaluation_figures(path: Path) -> bool:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and set(content) <= EVALUATION_FIGURES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="clip-level evaluation of float and int8 models")
    add_params_option(parser)
    add_model_name_option(
        parser, repeatable=True, help="a model to evaluate (repeatable); default: models.names"
    )
    parser.add_argument("--patches", type=Path, default=Path("artifacts/patches"))
    parser.add_argument("--models-root", type=Path, default=Path("models"))
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    parser.add_argument("--metrics", type=Path, default=Path("reports/metrics.json"))
    parser.add_argument(
        "--dvc-metrics-dir",
        type=Path,
        default=None,
        help="folder for each model's compared figures (DVC metrics)",
    )
    parser.add_argument("--streaming", action="store_true",
                        help="event-level evaluation over held-out soundscapes (one --model-name)")  # fmt: skip
    parser.add_argument("--validated", type=Path, default=Path("artifacts/validated.csv"),
                        help="--streaming: the validated clip table")  # fmt: skip
    parser.add_argument(
        "--raw-dir", type=Path, default=Path("data/raw"), help="--streaming: the clips' folder"
    )
    parser.add_argument("--soundscapes", type=Path, default=None,
                        help="--streaming: soundscape folder (default artifacts/soundscapes/<model>/evaluation)")  # fmt: skip
    parser.add_argument("--dvc-metrics", type=Path, default=None,
                        help="--streaming: file for the compared figures (DVC metrics)")  # fmt: skip
    parser.add_argument("--operating-point", type=Path, default=None,
                        help="--streaming: default <models-root>/<model>/postprocess.json when it exists")  # fmt: skip
    parser.set_defaults(handler=_main)


def _shown(value: Any) -> str:
    """A figure for the console: 3 decimals, or "undefined" (no event to find, or none found)."""
    return "undefined" if value is None else f"{value:.3f}"


def _calibrated(path: Path) -> Path | None:
    """The model's operating point file when `aed calibrate` wrote one (else params.yaml's detect: is used)."""
    return path if path.is_file() else None


def _main_streaming(args: argparse.Namespace) -> int:
    from aed.artifacts import OPERATING_POINT_FILE
    from aed.detection.detect import DetectParams
    from aed.detection.streaming_eval import StreamingParams

    names = args.model_name or []
    if len(names) != 1:
        raise ValueError(f"evaluate --streaming: give exactly one --model-name (got {len(names)})")
    name, root = names[0], Path(args.models_root)
    figures = run_streaming(
        load_section(args.params, "streaming", StreamingParams),
        load_section(args.params, "detect", DetectParams),
        load_section(args.params, "patch", PatchParams),
        name, args.validated, args.raw_dir, root / name / "float", root / name / "int8",
        args.soundscapes or Path("artifacts/soundscapes") / name / "evaluation", args.reports,
        args.operating_point or _calibrated(root / name / OPERATING_POINT_FILE), args.dvc_metrics,
    )  # fmt: skip
    mean = {key: _shown(value) for key, value in figures["mean"].items()}
    print(f"evaluate --streaming {name}: event F1 {mean.get('event_f1')}, PSDS {mean.get('psds')}, "
          f"{mean.get('false_alarms_per_hour')} false alarms per hour, miss rate {mean.get('miss_rate')}")  # fmt: skip
    return 0


def _main(args: argparse.Namespace) -> int:
    if args.streaming:
        if args.dvc_metrics_dir is not None:
            raise ValueError("evaluate --streaming: its DVC figures go to one file, --dvc-metrics FILE")
        return _main_streaming(args)
    if args.dvc_metrics is not None:
        raise ValueError(
            "evaluate: --dvc-metrics FILE is for --streaming; clip evaluation takes --dvc-metrics-dir"
        )
    from aed.evaluation import EvaluateParams, ModelFolders

    params = load_section(args.params, "evaluate", EvaluateParams)
    models = load_section(args.params, "models", ModelsParams)
    models.validate()
    folders = [ModelFolders.under(args.models_root, name) for name in args.model_name or models.names]
    metrics = run(params, args.patches, folders, args.reports, args.metrics, args.dvc_metrics_dir)
    for model, by_format in metrics.items():
        means = {
            fmt: round(m["clip_accuracy"]["mean"], 4) for fmt, m in by_format.items() if "clip_accuracy" in m
        }
        print(f"evaluate {model}: mean clip accuracy {means}")
    return 0
