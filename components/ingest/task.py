"""Kubeflow task body of step `ingest`: source -> raw audio folder + manifest.

A thin call of `components.ingest.run`; components/taskio.py says what a task body does and may import.
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
