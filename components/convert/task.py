"""Kubeflow task body of step `convert`: int8 model (+ patch store for the TFLM proof) -> footprint/latency record
(+ stedgeai's C code, the offline-planned TFLM model and its arena header).

A thin call of `components.convert.run`; components/taskio.py says what a task body does and may import.
"""

# No `from __future__ import annotations`: KFP reads these annotations as real types.
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


def convert(
    params: str,
    model_name: str,
    patches: Input[Dataset],
    quantized: Input[Model],
    generated: Output[Artifact],
    metrics: Output[Metrics],
):
    from pathlib import Path

    from aed.artifacts import deployable_model
    from components import convert as step
    from components.taskio import log_scalars, step_args

    args = step_args(params, step)
    target = args["params"].target_for(model_name)  # as `aed convert --model-name`
    result = step.run(
        model=deployable_model(Path(quantized.path)), target=target, out_dir=Path(generated.path),
        record_path=Path(metrics.path), patches=Path(patches.path), model_name=model_name, **args,
    )  # fmt: skip
    log_scalars(metrics, result)
