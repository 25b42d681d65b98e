"""Kubeflow task body of step `calibrate`: a model's splits + raw clips -> its post-processing operating point.

A thin call of `components.calibrate.run`; components/taskio.py says what a task body does and may import.
"""

# No `from __future__ import annotations`: KFP reads these annotations as real types.
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


def calibrate(
    params: str,
    model_name: str,
    raw: Input[Dataset],
    validated: Input[Dataset],
    model: Input[Model],
    quantized: Input[Model],
    operating_point: Output[Artifact],
    soundscapes: Output[Dataset],
    metrics: Output[Metrics],
):
    from pathlib import Path

    from components import calibrate as step
    from components.taskio import log_scalars, step_args

    result = step.run(
        validated=Path(validated.path), raw_dir=Path(raw.path), float_dir=Path(model.path),
        int8_dir=Path(quantized.path), operating_point_path=Path(operating_point.path),
        soundscapes_dir=Path(soundscapes.path), record_path=Path(metrics.path), **step_args(params, step),
    )  # fmt: skip
    log_scalars(metrics, result)
