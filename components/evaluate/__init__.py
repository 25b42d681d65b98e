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
from aed.records import write_json, write_record
from components.common import add_model_name_option, add_params_option

# pandas and the model runners come with aed.evaluation: imported where used, so that `aed --help` stays fast.
if TYPE_CHECKING:
    from aed.evaluation import EvaluateParams, ModelFolders


def __getattr__(name: str) -> Any:
    """`run`'s annotation types on first use (PEP 562): their module loads pandas."""
    if name in ("EvaluateParams", "ModelFolders"):
        from aed import evaluation

        return getattr(evaluation, name)
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
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
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
