"""Kubeflow task body of step `quantize`: float models + calibration patches -> int8 models.

A thin call of `components.quantize.run`; components/taskio.py says what a task body does and may import.
"""

# No `from __future__ import annotations`: KFP reads these annotations as real types.
from kfp.dsl import Dataset, Input, Metrics, Model, Output


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

    from aed.artifacts import QUANTIZE_RECORD_FILE
    from components import quantize as step
    from components.taskio import log_scalars, step_args

    result = step.run(
        patches_dir=Path(patches.path), model_dir=Path(model.path), out_dir=Path(quantized.path),
        model_name=model_name, **step_args(params, step),
    )  # fmt: skip
    shutil.copyfile(Path(quantized.path) / QUANTIZE_RECORD_FILE, metrics.path)
    log_scalars(metrics, result)
