"""The task glue: params sections per step, the deployable int8 model, metric metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

from aed.params import ParamsError
from pipelines import glue


def test_int8_names_match_the_quantize_step() -> None:
    from components.quantize import QUANTIZED_FILE

    assert set(glue.INT8_FILES) == set(QUANTIZED_FILE.values())


def test_deployable_model_prefers_final_and_ignores_intermediate_files(tmp_path: Path) -> None:
    for split in ("fold-1", "fold-2"):
        (tmp_path / split).mkdir()
        (tmp_path / split / "model_qdq.onnx").write_bytes(b"q")
        (tmp_path / split / "model_qdq_float.onnx").write_bytes(b"f")  # quantize's pre-quantization copy
    assert glue.deployable_model(tmp_path) == tmp_path / "fold-1" / "model_qdq.onnx"
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "model_int8.tflite").write_bytes(b"t")
    assert glue.deployable_model(tmp_path) == tmp_path / "final" / "model_int8.tflite"
    with pytest.raises(FileNotFoundError, match="expected exactly one of"):
        glue.deployable_model(tmp_path / "missing")


def test_step_args_reads_every_params_section_of_run() -> None:
    import components.train as train

    params = {"train": {"epochs": 3}, "models": {"names": ["yamnet_256"]}}
    args = glue.step_args(params, train)
    assert args["params"].epochs == 3 and args["models"].names == ["yamnet_256"]
    assert "models" not in glue.step_args({"train": {}}, train)  # absent section: the step's own default
    with pytest.raises(ParamsError, match="train.epochs: expected an integer, got 'x'"):
        glue.step_args('{"train": {"epochs": "x"}}', train)
    with pytest.raises(ParamsError, match="pipeline parameter 'params': not valid JSON"):
        glue.step_args("{not json", train)


def test_log_scalars_flattens_numbers_and_skips_configuration() -> None:
    class Sink:
        def __init__(self) -> None:
            self.metadata: dict = {}

        def log_metric(self, name: str, value: float) -> None:
            self.metadata[name] = value

    sink = Sink()
    glue.log_scalars(
        sink,
        {"a": 1, "b": {"c": 0.5, "d": "text"}, "ok": True, "nan": float("nan"), "params": {"epochs": 50}},
    )
    assert sink.metadata == {"a": 1, "b.c": 0.5, "ok": 1.0}
