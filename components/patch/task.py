"""Kubeflow task body of step `patch`: validated manifest + raw audio -> patch store.

KFP ships this function's source to the task's container, where it imports the installed project and calls
`components.patch.run`, the same entry point as `aed patch` and the dvc.yaml stage. It only maps
artifact paths and the params (params.yaml as JSON text) onto `run`'s arguments and copies the returned figures into
KFP metadata.
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
