"""The task glue: params sections per step, the deployable int8 model, metric metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

from aed.artifacts import deployable_model
from aed.params import ParamsError
from components import taskio
from pipelines import glue


def test_dvc_yaml_int8_file_names_are_the_artifact_names() -> None:
    """dvc.yaml's `model_stages` vars name each model's file exactly as aed.artifacts does for the model's
    quantize format, so the DVC stages and the steps cannot disagree on a file name."""
    import yaml

    from aed.artifacts import INT8_MODEL_FILE

    repo = Path(__file__).resolve().parents[2]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    formats = params["quantize"]["formats"]
    dvc_vars = yaml.safe_load((repo / "dvc.yaml").read_text())["vars"]
    stages = next(v["model_stages"] for v in dvc_vars if isinstance(v, dict) and "model_stages" in v)
    assert {model: entry["int8"] for model, entry in stages.items()} == {
        model: INT8_MODEL_FILE[formats[model]] for model in params["models"]["names"]
    }


def test_deployable_model_prefers_final_and_ignores_intermediate_files(tmp_path: Path) -> None:
    for split in ("fold-1", "fold-2"):
        (tmp_path / split).mkdir()
        (tmp_path / split / "model_qdq.onnx").write_bytes(b"q")
        (tmp_path / split / "model_qdq_float.onnx").write_bytes(b"f")  # quantize's pre-quantization copy
    assert deployable_model(tmp_path) == tmp_path / "fold-1" / "model_qdq.onnx"
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "model_int8.tflite").write_bytes(b"t")
    assert deployable_model(tmp_path) == tmp_path / "final" / "model_int8.tflite"
    with pytest.raises(FileNotFoundError, match="expected exactly one of"):
        deployable_model(tmp_path / "missing")


def test_step_args_reads_every_params_section_of_run() -> None:
    import components.train as train

    params = {"train": {"epochs": 3}, "models": {"names": ["yamnet_256"], "weights_cache_dir": "/cache/w"}}
    args = taskio.step_args(params, train)
    assert args["params"].epochs == 3 and args["models"].names == ["yamnet_256"]
    assert "models" not in taskio.step_args({"train": {}}, train)  # absent section: the step's own default
    with pytest.raises(ParamsError, match="train.epochs: expected an integer, got 'x'"):
        taskio.step_args('{"train": {"epochs": "x"}}', train)
    with pytest.raises(ParamsError, match="pipeline parameter 'params': not valid JSON"):
        taskio.step_args("{not json", train)


def test_log_scalars_flattens_numbers_and_skips_configuration() -> None:
    class Sink:
        def __init__(self) -> None:
            self.metadata: dict = {}

        def log_metric(self, name: str, value: float) -> None:
            self.metadata[name] = value

    sink = Sink()
    taskio.log_scalars(
        sink,
        {"a": 1, "b": {"c": 0.5, "d": "text"}, "ok": True, "nan": float("nan"), "params": {"epochs": 50}},
    )
    assert sink.metadata == {"a": 1, "b.c": 0.5, "ok": 1.0}


def test_a_task_refuses_every_relative_path_param(tmp_path: Path) -> None:
    """In a task a relative path would be read in the working directory: each path field is refused, one line."""
    import copy
    import importlib

    from pipelines.aed_pipeline import STEPS

    reader = {}  # params section -> a step module that reads it
    for step_name in STEPS:
        module = importlib.import_module(f"components.{step_name}")
        for section_name, _cls in taskio.params_sections(module).values():
            reader.setdefault(section_name, module)
    resolved = glue.resolve_paths({}, tmp_path, glue.section_classes(STEPS))  # every path field absolute
    for dotted in taskio.PATH_FIELDS:
        name, *keys = dotted.split(".")
        params = copy.deepcopy(resolved)
        node = params.setdefault(name, {})
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = "relative/thing"
        with pytest.raises(ParamsError) as raised:
            taskio.step_args(params, reader[name])
        message = str(raised.value)
        assert message.startswith(f"{dotted}: relative path 'relative/thing' in a pipeline task"), message
        assert "\n" not in message


def test_resolve_paths_joins_relative_values_and_defaults_to_the_root(tmp_path: Path) -> None:
    from pipelines.aed_pipeline import STEPS

    classes = glue.section_classes(STEPS)
    params = {
        "gate": {"baseline": "baselines/hil-{model_name}-{profile}.json"},
        "promote": {"registry": "s3://bucket/prefix"},
        "ingest": {"source": "https://example.invalid/a.zip", "cache_dir": "/abs/cache"},
    }
    resolved = glue.resolve_paths(params, tmp_path, classes)
    assert resolved["gate"]["baseline"] == str(tmp_path / "baselines" / "hil-{model_name}-{profile}.json")
    assert resolved["promote"]["registry"] == "s3://bucket/prefix"  # URLs are not paths
    assert resolved["ingest"]["source"] == "https://example.invalid/a.zip"
    assert resolved["ingest"]["cache_dir"] == "/abs/cache"
    # absent keys and sections: their relative defaults are written out, resolved
    assert resolved["hil"]["workdir"] == str(tmp_path / "work" / "hil")
    assert resolved["models"]["weights_cache_dir"] == str(tmp_path / ".cache" / "aed" / "weights")
    assert params["gate"]["baseline"].startswith("baselines/")  # the input is not changed
    for dotted in taskio.PATH_FIELDS:  # nothing relative is left for a task to read in its working directory
        name, *keys = dotted.split(".")
        taskio.require_absolute_paths(name, resolved.get(name, {}))
