"""Kubeflow task body of step `evaluate`: float and int8 models + patch store -> clip-level metrics.

A thin call of `components.evaluate.run`; components/taskio.py says what a task body does and may import.
"""

# No `from __future__ import annotations`: KFP reads these annotations as real types.
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output


def evaluate(
    params: str,
    model_name: str,
    patches: Input[Dataset],
    model: Input[Model],
    quantized: Input[Model],
    details: Output[Artifact],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    report: Output[Markdown],
):
    import json
    import shutil
    from pathlib import Path

    from aed.artifacts import EVALUATION_FILE
    from aed.evaluation import ModelFolders
    from components import evaluate as step
    from components.markdown import record_markdown
    from components.taskio import log_scalars, step_args

    folders = ModelFolders(model_name, float_dir=Path(model.path), int8_dir=Path(quantized.path))
    result = step.run(
        patches_dir=Path(patches.path), models=[folders], reports_root=Path(details.path),
        record_path=Path(metrics.path), **step_args(params, step),
    )  # fmt: skip
    log_scalars(metrics, result[model_name])
    evaluation = json.loads((Path(details.path) / model_name / EVALUATION_FILE).read_text())
    formats = evaluation["formats"]
    shown = next(
        (f for f in formats if f != "float32"), "float32"
    )  # the int8 model's matrix when there is one
    confusion.log_confusion_matrix(evaluation["class_names"], formats[shown]["confusion"])
    confusion.metadata["format"] = shown
    # The matrix also as the artifact's content (KFP keeps log_confusion_matrix in metadata only).
    shutil.copyfile(Path(details.path) / model_name / f"confusion_{shown}.json", confusion.path)
    Path(report.path).write_text(record_markdown(f"Evaluation: {model_name}", result[model_name]))


def evaluate_streaming(
    params: str,
    model_name: str,
    raw: Input[Dataset],
    validated: Input[Dataset],
    model: Input[Model],
    quantized: Input[Model],
    operating_point: Input[Artifact],
    soundscapes: Output[Dataset],
    details: Output[Artifact],
    metrics: Output[Metrics],
):
    """`aed evaluate --streaming` for one model: its splits' int8 models over held-out soundscapes, at the
    calibrate task's operating point."""
    import shutil
    from pathlib import Path

    from components import evaluate as step
    from components.taskio import log_scalars, section

    result = step.run_streaming(
        section(params, "streaming", step.StreamingParams), section(params, "detect", step.DetectParams),
        section(params, "patch", step.PatchParams), model_name, Path(validated.path), Path(raw.path),
        Path(model.path), Path(quantized.path), Path(soundscapes.path), Path(details.path),
        operating_point=Path(operating_point.path),
    )  # fmt: skip
    log_scalars(metrics, {"source": result["source"], **result["mean"]})
    metrics.metadata["source"] = result["source"]
    # the record also as the artifact's content (KFP keeps logged metrics in metadata only)
    shutil.copyfile(Path(details.path) / model_name / "streaming.json", metrics.path)
