"""KFP task bodies: one per step, each a thin call of that step's single entry point `components.<step>.run`.

These functions become lightweight components (`pipelines.aed_pipeline` wraps them with `dsl.component`); KFP
ships each body as source to the task's container, where it imports the installed project. A body only maps
artifact paths and the params dict onto `run`'s arguments and copies the returned figures into KFP metadata;
the work itself is done by the same code that `aed <step>` and `dvc repro` run.

`params` is the whole params.yaml as a JSON string (KFP's struct parameters cannot hold YAML's nulls).

Every body must import its step as `from components import <step> as step` and call `step.run(...)`: a test
reads the bodies and checks exactly that.
"""

# No `from __future__ import annotations` here: KFP reads these annotations as real types.
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output


def ingest(params: str, raw: Output[Dataset], manifest: Output[Dataset], metrics: Output[Metrics]):
    from pathlib import Path

    from components import ingest as step
    from pipelines.glue import log_scalars, step_params

    result = step.run(step_params(params, step), Path(raw.path), Path(manifest.path), Path(metrics.path))
    log_scalars(metrics, result)


def validate(
    params: str,
    raw: Input[Dataset],
    manifest: Input[Dataset],
    validated: Output[Dataset],
    report: Output[Markdown],
    data_docs: Output[HTML],
    metrics: Output[Metrics],
):
    import json
    from pathlib import Path

    from components import validate as step
    from pipelines.glue import log_scalars, step_params
    from pipelines.reports import validation_markdown

    record_path = Path(metrics.path)
    try:
        result = step.run(
            step_params(params, step),
            Path(manifest.path),
            Path(raw.path),
            Path(validated.path),
            record_path,
            Path(data_docs.path),
        )
    finally:
        # The report is most useful when validation fails: write it whenever the step got that far.
        if record_path.exists():
            Path(report.path).write_text(validation_markdown(json.loads(record_path.read_text())))
    log_scalars(metrics, result)


def patch(
    params: str,
    raw: Input[Dataset],
    validated: Input[Dataset],
    patches: Output[Dataset],
    metrics: Output[Metrics],
):
    import json
    from pathlib import Path

    from components import patch as step
    from pipelines.glue import log_scalars, step_params

    # Same class order as `aed patch`: the validated class list fixes the model's output order.
    classes = (json.loads(params).get("validate") or {}).get("classes")
    result = step.run(
        step_params(params, step),
        Path(validated.path),
        Path(raw.path),
        Path(patches.path),
        Path(metrics.path),
        classes,
    )
    log_scalars(metrics, result)


def train(
    params: str,
    model_name: str,
    patches: Input[Dataset],
    model: Output[Model],
    history: Output[Artifact],
    metrics: Output[Metrics],
):
    from pathlib import Path

    from components import train as step
    from pipelines.glue import log_scalars, step_params

    result = step.run(
        step_params(params, step),
        model_name=model_name,
        patches_dir=Path(patches.path),
        model_dir=Path(model.path),
        history_path=Path(history.path),
        metrics_path=Path(metrics.path),
    )
    log_scalars(metrics, result)


def quantize(
    params: str,
    model_name: str,
    patches: Input[Dataset],
    model: Input[Model],
    quantized: Output[Model],
    metrics: Output[Metrics],
):
    from pathlib import Path

    from components import quantize as step
    from pipelines.glue import log_scalars, step_params

    result = step.run(
        step_params(params, step),
        model_name=model_name,
        model_dir=Path(model.path),
        patches_dir=Path(patches.path),
        out_dir=Path(quantized.path),
        metrics_path=Path(metrics.path),
    )
    log_scalars(metrics, result)


def evaluate(
    params: str,
    model_name: str,
    patches: Input[Dataset],
    model: Input[Model],
    quantized: Input[Model],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    report: Output[Markdown],
):
    import json
    from pathlib import Path

    from components import evaluate as step
    from pipelines.glue import log_scalars, step_params
    from pipelines.reports import record_markdown

    result = step.run(
        step_params(params, step),
        model_name=model_name,
        patches_dir=Path(patches.path),
        model_dir=Path(model.path),
        quantized_dir=Path(quantized.path),
        metrics_path=Path(metrics.path),
    )
    log_scalars(metrics, result)
    record = json.loads(Path(metrics.path).read_text())
    matrix = record.get("confusion_matrix")
    if matrix:
        confusion.log_confusion_matrix(record["class_names"], matrix)
    Path(report.path).write_text(record_markdown(f"Evaluation: {model_name}", record))


def convert(
    params: str,
    model_name: str,
    quantized: Input[Model],
    firmware: Output[Artifact],
    metrics: Output[Metrics],
):
    from pathlib import Path

    from components import convert as step
    from pipelines.glue import log_scalars, step_params

    result = step.run(
        step_params(params, step),
        model_name=model_name,
        quantized_dir=Path(quantized.path),
        out_dir=Path(firmware.path),
        metrics_path=Path(metrics.path),
    )
    log_scalars(metrics, result)


def hil(
    params: str,
    model_name: str,
    patches: Input[Dataset],
    quantized: Input[Model],
    metrics: Output[Metrics],
):
    from pathlib import Path

    from components import hil as step
    from pipelines.glue import log_scalars, step_params

    result = step.run(
        step_params(params, step),
        model_name=model_name,
        quantized_dir=Path(quantized.path),
        patches_dir=Path(patches.path),
        metrics_path=Path(metrics.path),
    )
    log_scalars(metrics, result)


def gate(
    params: str,
    model_name: str,
    evaluation: Input[Metrics],
    footprint: Input[Metrics],
    board: Input[Metrics],
    verdict: Output[Artifact],
    table: Output[Markdown],
) -> bool:
    from pathlib import Path

    from components import gate as step
    from pipelines.glue import step_params

    result = step.run(
        step_params(params, step),
        model_name=model_name,
        evaluate_record=Path(evaluation.path),
        convert_record=Path(footprint.path),
        hil_record=Path(board.path),
        out_path=Path(verdict.path),
        table_path=Path(table.path),
    )
    # The verdict is this task's one parameter output: `dsl.If` on it decides whether promote runs.
    return bool(result["passed"])


def promote(
    params: str,
    model_name: str,
    model: Input[Model],
    quantized: Input[Model],
    firmware: Input[Artifact],
    evaluation: Input[Metrics],
    footprint: Input[Metrics],
    board: Input[Metrics],
    verdict: Input[Artifact],
    promotion: Output[Artifact],
):
    import shutil
    import tempfile
    from pathlib import Path

    from components import promote as step
    from pipelines.glue import step_params

    with tempfile.TemporaryDirectory() as scratch:
        # Give the records their step names in the registry (KFP names every file after its output).
        records = Path(scratch) / "records"
        records.mkdir()
        for name, record in (("evaluate", evaluation), ("convert", footprint), ("hil", board)):
            shutil.copyfile(record.path, records / f"{name}.json")
        artifacts = {
            "float": Path(model.path),
            "quantized": Path(quantized.path),
            "firmware": Path(firmware.path),
            "records": records,
        }
        step.run(step_params(params, step), model_name, artifacts, Path(verdict.path), Path(promotion.path))
