"""Kubeflow task body of step `validate`: manifest + raw audio -> validated manifest, report, Data Docs.

A thin call of `components.validate.run`; components/taskio.py says what a task body does and may import.
"""

# No `from __future__ import annotations`: KFP reads these annotations as real types.
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Output


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
    from components.markdown import validation_markdown
    from components.taskio import log_scalars, step_args

    record = Path(metrics.path)
    try:
        result = step.run(
            manifest_path=Path(manifest.path), raw_dir=Path(raw.path), validated_path=Path(validated.path),
            record_path=record, docs_dir=Path(data_docs.path), **step_args(params, step),
        )  # fmt: skip
    finally:
        # The report matters most when validation fails: write it whenever the step got that far.
        if record.exists():
            Path(report.path).write_text(validation_markdown(json.loads(record.read_text())))
    log_scalars(metrics, result)
