"""Kubeflow task body of step `gate`: records + baseline -> verdict.

A thin call of `components.gate.run`; components/taskio.py says what a task body does and may import.
"""

# No `from __future__ import annotations`: KFP reads these annotations as real types.
from kfp.dsl import Artifact, Input, Markdown, Metrics, Output


def gate(
    params: str,
    model_name: str,
    evaluation: Input[Metrics],
    footprint: Input[Metrics],
    board: Input[Metrics],
    verdict: Output[Artifact],
    table: Output[Markdown],
    stream: Input[Metrics] = None,
    streaming: Input[Artifact] = None,
) -> bool:
    from pathlib import Path

    from components import gate as step
    from components.taskio import step_args

    result = step.run(
        hil_record=Path(board.path), record_path=Path(verdict.path), model_name=model_name,
        table_path=Path(table.path), evaluate_record=Path(evaluation.path), convert_record=Path(footprint.path),
        stream_record=Path(stream.path) if stream is not None else None,
        # the streaming evaluation task writes its reports folder: <model>/streaming.json in it
        streaming_evaluation=Path(streaming.path) / model_name / "streaming.json" if streaming is not None else None,
        **step_args(params, step),
    )  # fmt: skip
    print(result["table"])
    # This task's one parameter output: `dsl.If` on it decides whether promote runs.
    return bool(result["passed"])
