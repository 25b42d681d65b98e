"""Kubeflow task body of step `promote`: passed verdict + artifacts -> registry entry.

A thin call of `components.promote.run`; components/taskio.py says what a task body does and may import.
"""

# No `from __future__ import annotations`: KFP reads these annotations as real types.
from kfp.dsl import Artifact, Input, Metrics, Model, Output


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
    stream: Input[Metrics] = None,
    streaming: Input[Artifact] = None,
):
    import shutil
    import tempfile
    from pathlib import Path

    from aed.artifacts import FLOAT_MODEL_FILE, deployable_model
    from components import promote as step
    from components.taskio import step_args

    with tempfile.TemporaryDirectory() as scratch:
        # Give the records their step names in the registry (KFP names every file after its output).
        records = Path(scratch) / "records"
        records.mkdir()
        for name, record in (("evaluate", evaluation), ("convert", footprint), ("hil", board)):
            shutil.copyfile(record.path, records / f"{name}.json")
        gate_record = Path(scratch) / "gate.json"
        shutil.copyfile(verdict.path, gate_record)
        int8 = deployable_model(Path(quantized.path))
        float_model = Path(model.path) / int8.parent.name / FLOAT_MODEL_FILE
        artifacts = {"model": int8, "float": float_model, "records": records, "firmware": Path(tables.path)}
        # The stream record and the streaming evaluation the gate judged (promote checks their sha256).
        if stream is not None:
            artifacts["hil_stream"] = Path(stream.path)
        if (
            streaming is not None
        ):  # the streaming evaluation task's reports folder: <model>/streaming.json in it
            artifacts["streaming"] = Path(streaming.path) / model_name / "streaming.json"
        if any(
            Path(generated.path).rglob("*")
        ):  # convert's stedgeai C code; empty when only the estimator ran
            artifacts["generated"] = Path(generated.path)
        result = step.run(
            model=model_name, artifacts=artifacts, gate_record=gate_record, record_path=Path(promotion.path),
            hil_record=Path(board.path), **step_args(params, step),
        )  # fmt: skip
        print(f"promote: {result['message']}")  # promoted / already promoted / not promoted, and why
