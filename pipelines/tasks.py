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
    from pipelines.glue import log_scalars, step_args

    result = step.run(
        raw_dir=Path(raw.path), manifest_path=Path(manifest.path), metrics_path=Path(metrics.path),
        **step_args(params, step),
    )  # fmt: skip
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
    from pipelines.glue import log_scalars, step_args
    from pipelines.reports import validation_markdown

    record = Path(metrics.path)
    try:
        result = step.run(
            manifest_path=Path(manifest.path), raw_dir=Path(raw.path), validated_path=Path(validated.path),
            report_path=record, docs_dir=Path(data_docs.path), **step_args(params, step),
        )  # fmt: skip
    finally:
        # The report matters most when validation fails: write it whenever the step got that far.
        if record.exists():
            Path(report.path).write_text(validation_markdown(json.loads(record.read_text())))
    log_scalars(metrics, result)


def patch(
    params: str,
    raw: Input[Dataset],
    validated: Input[Dataset],
    patches: Output[Dataset],
    metrics: Output[Metrics],
):
    from pathlib import Path

    from components import patch as step
    from pipelines.glue import class_names, log_scalars, step_args

    # As `aed patch` does: the validated class list fixes the model's output order.
    result = step.run(
        manifest_path=Path(validated.path), raw_dir=Path(raw.path), patches_dir=Path(patches.path),
        metrics_path=Path(metrics.path), class_names=class_names(params), **step_args(params, step),
    )  # fmt: skip
    log_scalars(metrics, result)


def train(
    params: str,
    model_name: str,
    patches: Input[Dataset],
    model: Output[Model],
    history: Output[Artifact],
    metrics: Output[Metrics],
    teacher: Input[Model] = None,
):
    import shutil
    from pathlib import Path

    from components import train as step
    from pipelines.glue import log_scalars, step_args

    # teacher: the train output of the model train.teacher names, wired in the DAG (run refuses it missing).
    result = step.run(
        patches_dir=Path(patches.path), out_dir=Path(model.path), model_name=model_name,
        reports_dir=Path(history.path), teacher_dir=Path(teacher.path) if teacher is not None else None,
        **step_args(params, step),
    )  # fmt: skip
    shutil.copyfile(Path(model.path) / "train.json", metrics.path)
    log_scalars(metrics, result)


def quantize(
    params: str,
    model_name: str,
    patches: Input[Dataset],
    model: Input[Model],
    quantized: Output[Model],
    metrics: Output[Metrics],
):
    import shutil
    from pathlib import Path

    from components import quantize as step
    from pipelines.glue import log_scalars, step_args

    result = step.run(
        patches_dir=Path(patches.path), model_dir=Path(model.path), out_dir=Path(quantized.path),
        model_name=model_name, **step_args(params, step),
    )  # fmt: skip
    shutil.copyfile(Path(quantized.path) / "quantize.json", metrics.path)
    log_scalars(metrics, result)


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
    import tempfile
    from pathlib import Path

    from components import evaluate as step
    from pipelines.glue import log_scalars, step_args
    from pipelines.reports import record_markdown

    with tempfile.TemporaryDirectory() as scratch:
        # evaluate reads <models_root>/<model>/{float,int8}, the DVC layout: link the two artifacts there.
        models_root = Path(scratch)
        (models_root / model_name).mkdir()
        (models_root / model_name / "float").symlink_to(Path(model.path).resolve(), target_is_directory=True)
        (models_root / model_name / "int8").symlink_to(
            Path(quantized.path).resolve(), target_is_directory=True
        )
        result = step.run(
            patches_dir=Path(patches.path), models_root=models_root, reports_root=Path(details.path),
            model_names=[model_name], metrics_path=Path(metrics.path), **step_args(params, step),
        )  # fmt: skip
    log_scalars(metrics, result[model_name])
    evaluation = json.loads((Path(details.path) / model_name / "evaluation.json").read_text())
    formats = evaluation["formats"]
    shown = next(
        (f for f in formats if f != "float32"), "float32"
    )  # the int8 model's matrix when there is one
    confusion.log_confusion_matrix(evaluation["class_names"], formats[shown]["confusion"])
    confusion.metadata["format"] = shown
    # The matrix also as the artifact's content (KFP keeps log_confusion_matrix in metadata only).
    shutil.copyfile(Path(details.path) / model_name / f"confusion_{shown}.json", confusion.path)
    Path(report.path).write_text(record_markdown(f"Evaluation: {model_name}", result[model_name]))


def convert(
    params: str,
    model_name: str,
    quantized: Input[Model],
    generated: Output[Artifact],
    metrics: Output[Metrics],
):
    from pathlib import Path

    from components import convert as step
    from pipelines.glue import deployable_model, log_scalars, step_args

    args = step_args(params, step)
    target = args["params"].targets.get(model_name)  # as `aed convert --model-name`
    if target is None:
        raise ValueError(f"convert.targets: no target for model '{model_name}'")
    result = step.run(
        model=deployable_model(Path(quantized.path)), target=target, out_dir=Path(generated.path),
        record_path=Path(metrics.path), **args,
    )  # fmt: skip
    log_scalars(metrics, result)


def export_firmware(
    params: str,
    model_name: str,
    quantized: Input[Model],
    tables: Output[Artifact],
    metrics: Output[Metrics],
):
    from pathlib import Path

    from components import export_firmware as step
    from pipelines.glue import class_names, deployable_model, feature_config, log_scalars, step_args

    result = step.run(
        config=feature_config(params), class_names=class_names(params) or [],
        model=deployable_model(Path(quantized.path)), out_dir=Path(tables.path), record_path=Path(metrics.path),
        **step_args(params, step),
    )  # fmt: skip
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
    from pipelines.glue import deployable_model, log_scalars, step_args

    result = step.run(
        patches_dir=Path(patches.path), model_path=deployable_model(Path(quantized.path)), quantized_dir=None,
        record_path=Path(metrics.path), model_name=model_name, progress=False,
        **step_args(params, step),
    )  # fmt: skip
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
    from pipelines.glue import step_args

    result = step.run(
        hil_record=Path(board.path), out_path=Path(verdict.path), model_name=model_name,
        table_path=Path(table.path), evaluate_record=Path(evaluation.path), convert_record=Path(footprint.path),
        **step_args(params, step),
    )  # fmt: skip
    print(result["table"])
    # This task's one parameter output: `dsl.If` on it decides whether promote runs.
    return bool(result["passed"])


def promote(
    params: str,
    model_name: str,
    model: Input[Model],
    quantized: Input[Model],
    generated: Input[Artifact],
    tables: Input[Artifact],
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
    from pipelines.glue import deployable_model, step_args

    with tempfile.TemporaryDirectory() as scratch:
        # Give the records their step names in the registry (KFP names every file after its output).
        records = Path(scratch) / "records"
        records.mkdir()
        for name, record in (("evaluate", evaluation), ("convert", footprint), ("hil", board)):
            shutil.copyfile(record.path, records / f"{name}.json")
        gate_record = Path(scratch) / "gate.json"
        shutil.copyfile(verdict.path, gate_record)
        int8 = deployable_model(Path(quantized.path))
        float_model = Path(model.path) / int8.parent.name / "model.keras"
        artifacts = {"model": int8, "float": float_model, "records": records, "firmware": Path(tables.path)}
        if any(
            Path(generated.path).rglob("*")
        ):  # convert's stedgeai C code; empty when only the estimator ran
            artifacts["generated"] = Path(generated.path)
        step.run(
            model=model_name, artifacts=artifacts, gate_record=gate_record, out=Path(promotion.path),
            hil_record=Path(board.path), **step_args(params, step),
        )  # fmt: skip
