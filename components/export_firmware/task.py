"""Kubeflow task body of step `export_firmware`: int8 model + front-end settings -> firmware tables.

A thin call of `components.export_firmware.run`; components/taskio.py says what a task body does and may import.
"""

# No `from __future__ import annotations`: KFP reads these annotations as real types.
from kfp.dsl import Artifact, Input, Metrics, Model, Output


def export_firmware(
    params: str,
    model_name: str,
    quantized: Input[Model],
    operating_point: Input[Artifact],
    tables: Output[Artifact],
    metrics: Output[Metrics],
):
    from pathlib import Path

    from aed.artifacts import deployable_model
    from components import export_firmware as step
    from components.taskio import class_names, feature_config, log_scalars, step_args

    result = step.run(
        config=feature_config(params), class_names=class_names(params),
        model=deployable_model(Path(quantized.path)), out_dir=Path(tables.path), record_path=Path(metrics.path),
        operating_point=Path(operating_point.path), **step_args(params, step),
    )  # fmt: skip
    log_scalars(metrics, result)
