"""Kubeflow task body of step `patch`: validated manifest + raw audio -> patch store.

A thin call of `components.patch.run`; components/taskio.py says what a task body does and may import.
"""

# No `from __future__ import annotations`: KFP reads these annotations as real types.
from kfp.dsl import Dataset, Input, Metrics, Output


def patch(
    params: str,
    raw: Input[Dataset],
    validated: Input[Dataset],
    patches: Output[Dataset],
    metrics: Output[Metrics],
):
    from pathlib import Path

    from components import patch as step
    from components.taskio import class_names, log_scalars, step_args

    # As `aed patch` does: the validated class list fixes the model's output order.
    result = step.run(
        manifest_path=Path(validated.path), raw_dir=Path(raw.path), patches_dir=Path(patches.path),
        record_path=Path(metrics.path), class_names=class_names(params), **step_args(params, step),
    )  # fmt: skip
    log_scalars(metrics, result)
