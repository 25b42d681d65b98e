"""Kubeflow task body of step `export_firmware`: int8 model + front-end settings -> firmware tables.

KFP ships this function's source to the task's container, where it imports the installed project and calls
`components.export_firmware.run`, the same entry point as `aed export-firmware` and the dvc.yaml stage. It only maps
artifact paths and the params (params.yaml as JSON text) onto `run`'s arguments and copies the returned figures into
KFP metadata.
"""

# No `from __future__ import annotations`: KFP reads these annotations as real types.
from kfp.dsl import Artifact, Input, Metrics, Model, Output


def export_firmware(
    params: str,
    model_name: str,
    quantized: Input[Model],
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
        **step_args(params, step),
    )  # fmt: skip
    log_scalars(metrics, result)
