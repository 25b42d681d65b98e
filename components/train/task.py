"""Kubeflow task body of step `train`: patch store (+ the teacher's models) -> float models.

A thin call of `components.train.run`; components/taskio.py says what a task body does and may import.
"""

# No `from __future__ import annotations`: KFP reads these annotations as real types.
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


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

    from aed.artifacts import TRAIN_RECORD_FILE
    from components import train as step
    from components.taskio import log_scalars, params_dict, step_args

    # teacher: the train output of the model train.teacher names, wired in the DAG (run refuses it missing).
    result = step.run(
        patches_dir=Path(patches.path), out_dir=Path(model.path), model_name=model_name,
        reports_dir=Path(history.path), teacher_dir=Path(teacher.path) if teacher is not None else None,
        section=params_dict(params).get("train"), **step_args(params, step),
    )  # fmt: skip
    shutil.copyfile(Path(model.path) / TRAIN_RECORD_FILE, metrics.path)
    log_scalars(metrics, result)
