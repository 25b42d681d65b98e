"""Kubeflow task body of step `report`: a folder of the run's records -> one self-contained HTML page.

A thin call of `components.report.run`; components/taskio.py says what a task body does and may import.
"""

# No `from __future__ import annotations`: KFP reads these annotations as real types.
from kfp.dsl import HTML, Dataset, Input, Output


def report(params: str, reports: Input[Dataset], page: Output[HTML]):
    from pathlib import Path

    from components import report as step
    from components.taskio import step_args

    step.run(reports_dir=Path(reports.path), html_path=Path(page.path), **step_args(params, step))
