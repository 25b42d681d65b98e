"""Kubeflow task body of step `ingest`: source -> raw audio folder + manifest.

KFP ships this function's source to the task's container, where it imports the installed project and calls
`components.ingest.run`, the same entry point as `aed ingest` and the dvc.yaml stage. It only maps
artifact paths and the params (params.yaml as JSON text) onto `run`'s arguments and copies the returned figures into
KFP metadata.
"""

# No `from __future__ import annotations`: KFP reads these annotations as real types.
from kfp.dsl import Dataset, Metrics, Output


def ingest(params: str, raw: Output[Dataset], manifest: Output[Dataset], metrics: Output[Metrics]):
    from pathlib import Path

    from components import ingest as step
    from components.taskio import log_scalars, step_args

    result = step.run(
        raw_dir=Path(raw.path), manifest_path=Path(manifest.path), record_path=Path(metrics.path),
        **step_args(params, step),
    )  # fmt: skip
    log_scalars(metrics, result)
