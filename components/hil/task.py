"""Kubeflow task body of step `hil`: int8 model + patch store -> on-board (or virtual-board) record.

A thin call of `components.hil.run`; components/taskio.py says what a task body does and may import.
"""

# No `from __future__ import annotations`: KFP reads these annotations as real types.
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


def hil(
    params: str,
    model_name: str,
    patches: Input[Dataset],
    quantized: Input[Model],
    metrics: Output[Metrics],
):
    from pathlib import Path

    from aed.artifacts import deployable_model
    from components import hil as step
    from components.taskio import log_scalars, step_args

    result = step.run(
        patches_dir=Path(patches.path), model_path=deployable_model(Path(quantized.path)), quantized_dir=None,
        record_path=Path(metrics.path), model_name=model_name, progress=False,
        **step_args(params, step),
    )  # fmt: skip
    log_scalars(metrics, result)


def hil_stream(
    params: str,
    model_name: str,
    patches: Input[Dataset],
    quantized: Input[Model],
    soundscapes: Input[Dataset],
    stream: Output[Metrics],
    operating_point: Input[Artifact] = None,
):
    """`aed hil run --stream`: the first held-out soundscape through the (virtual) board -> the stream record."""
    from pathlib import Path

    from aed.artifacts import deployable_model
    from aed.detection.detect import DetectParams
    from components import hil as step
    from components.taskio import log_scalars, section, step_args

    result = step.run_stream(
        recording=Path(soundscapes.path), model_path=deployable_model(Path(quantized.path)), quantized_dir=None,
        record_path=Path(stream.path), patches_dir=Path(patches.path), model_name=model_name, progress=False,
        detect=section(params, "detect", DetectParams),
        operating_point=Path(operating_point.path) if operating_point is not None else None,
        **step_args(params, step),
    )  # fmt: skip
    log_scalars(stream, result)
