"""Kubeflow task body of step `convert`: int8 model -> footprint/latency record (+ stedgeai's C code).

KFP ships this function's source to the task's container, where it imports the installed project and calls
`components.convert.run`, the same entry point as `aed convert` and the dvc.yaml stage. It only maps
artifact paths and the params (params.yaml as JSON text) onto `run`'s arguments and copies the returned figures into
KFP metadata.
"""

# No `from __future__ import annotations`: KFP reads these annotations as real types.
from kfp.dsl import Artifact, Input, Metrics, Model, Output


def convert(
    params: str,
    model_name: str,
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
        record_path=Path(metrics.path), **args,
    )  # fmt: skip
    log_scalars(metrics, result)
