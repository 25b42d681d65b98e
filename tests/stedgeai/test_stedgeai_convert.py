"""End to end: the convert step against a fake `stedgeai`, and its estimator fallback."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from aed.stedgeai import StedgeaiError, StedgeaiNotFound, StedgeaiReportError
from components.cli import main as aed_main
from components.convert import ConvertParams, run


def _qdq_model(path: Path) -> Path:
    """A two-conv int8 QDQ ONNX model written with onnx.helper (no TensorFlow needed)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.ones((8, 1, 3, 3), np.int8), "w1"),
        numpy_helper.from_array(np.ones((4, 8, 1, 1), np.int8), "w2"),
        numpy_helper.from_array(np.full(8, 0.01, np.float32), "s8"),
        numpy_helper.from_array(np.zeros(8, np.int8), "z8"),
        numpy_helper.from_array(np.full(4, 0.01, np.float32), "s4"),
        numpy_helper.from_array(np.zeros(4, np.int8), "z4"),
        numpy_helper.from_array(np.zeros(8, np.int32), "b1"),
        numpy_helper.from_array(np.array(0.05, np.float32), "a_s"),
        numpy_helper.from_array(np.array(0, np.int8), "a_z"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "a_s", "a_z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "a_s", "a_z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w1", "s8", "z8"], ["w1d"], axis=0),
        helper.make_node("DequantizeLinear", ["b1", "s8"], ["b1d"], axis=0),
        helper.make_node("Conv", ["xd", "w1d", "b1d"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("QuantizeLinear", ["c1", "a_s", "a_z"], ["c1q"]),
        helper.make_node("DequantizeLinear", ["c1q", "a_s", "a_z"], ["c1d"]),
        helper.make_node("DequantizeLinear", ["w2", "s4", "z4"], ["w2d"], axis=0),
        helper.make_node("Conv", ["c1d", "w2d"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    return _qdq_model(tmp_path / "tiny_qdq.onnx")


def _calls(tmp_path: Path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp_path / "fake_args.jsonl").read_text().splitlines()]


def test_convert_with_fake_tool_u5(fake_stedgeai: Path, model: Path, tmp_path: Path) -> None:
    record_path = tmp_path / "reports" / "convert.json"
    record = run(ConvertParams(), model, "stm32u5", tmp_path / "out", record_path)
    assert record["source"] == "stedgeai" and record["tool_version"] == "3.0.0-20426 123672867"
    assert (record["weights_bytes"], record["activations_bytes"], record["macc"]) == (
        139176,
        112200,
        24_000_000,
    )
    assert record["latency_source"] == "estimator" and record["estimator"]["source"] == "estimator"
    names = {f["name"] for f in record["generated_files"]}
    assert {"network.c", "network.h", "network_data.c", "network_c_info.json"} <= names
    calls = _calls(tmp_path)
    assert calls[0] == ["--version"]
    generate = calls[1]
    assert generate[:5] == ["generate", "--model", str(model), "--target", "stm32u5"]
    assert "--st-neural-art" not in generate
    written = json.loads(record_path.read_text())
    assert written["source"] == "stedgeai" and written["schema_version"] >= 1 and written["inputs"]["model"]


def test_convert_with_fake_tool_n6_takes_macc_from_text(
    fake_stedgeai: Path, model: Path, tmp_path: Path
) -> None:
    record = run(ConvertParams(), model, "stm32n6", tmp_path / "out", None)
    assert record["macc"] == 24_000_000  # c_info nodes all have macc 0 on the N6
    assert set(record["null_fields"]) >= {"kernel_flash", "kernel_ram"}
    generate = _calls(tmp_path)[1]
    assert generate[generate.index("--st-neural-art") + 1] == "default"


def test_convert_falls_back_to_estimator(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("STEDGEAI_CORE_DIR", raising=False)
    record = run(ConvertParams(), model, "stm32u5", tmp_path / "out", tmp_path / "convert.json")
    assert record["source"] == "estimator" and record["tool_version"] is None
    assert record["generated_files"] == []
    assert (tmp_path / "out").is_dir() and not any((tmp_path / "out").iterdir())
    assert record["estimator"]["layers"] and record["estimator"]["source"] == "estimator"
    assert record["macc"] == 8 * 8 * 8 * 9 + 8 * 8 * 8 * 4  # conv3x3/s2 1->8 on 16x16, then 1x1 8->4
    with pytest.raises(StedgeaiNotFound, match="require"):
        run(ConvertParams(use_stedgeai="require"), model, "stm32u5", tmp_path / "out", None)


@pytest.mark.parametrize(
    ("mode", "error", "message"),
    [
        ("fail", StedgeaiError, "exited with code 3.*unsupported layer type"),
        ("garbage", StedgeaiReportError, "wrote no c_info report"),
        ("badjson", StedgeaiReportError, "not a JSON report"),
        ("missingkey", StedgeaiReportError, "memory_footprint.weights"),
    ],
)
def test_convert_tool_failures(
    fake_stedgeai: Path,
    model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    error,
    message: str,
) -> None:
    monkeypatch.setenv("FAKE_STEDGEAI_MODE", mode)
    with pytest.raises(error, match=f"(?s){message}"):
        run(ConvertParams(), model, "stm32u5", tmp_path / "out", tmp_path / "convert.json")
    assert not (tmp_path / "convert.json").exists()


def test_convert_timeout(
    fake_stedgeai: Path, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_STEDGEAI_MODE", "hang")
    with pytest.raises(StedgeaiError, match=r"timed out after 2\.\d+ s \(limit 2 s\)"):
        run(ConvertParams(timeout_s=2.0), model, "stm32u5", tmp_path / "out", None)


def test_cli_convert_and_estimate(fake_stedgeai: Path, model: Path, tmp_path: Path, capsys) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("convert:\n  targets: {tiny: stm32u5}\n  timeout_s: 60\n")
    record = tmp_path / "convert.json"
    code = aed_main(["convert", "--params", str(params), "--model", str(model), "--model-name", "tiny",
                     "--out", str(tmp_path / "out"), "--record", str(record)])  # fmt: skip
    assert code == 0 and json.loads(record.read_text())["source"] == "stedgeai"
    assert aed_main(["estimate", str(model), "--target", "stm32n6", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.split("\n", 1)[1])  # first line is the convert summary
    assert printed["source"] == "estimator" and printed["target"] == "stm32n6"
    params.write_text("convert:\n  timeout_s: -1\n")
    assert aed_main(["convert", "--params", str(params), "--model", str(model), "--target", "stm32u5",
                     "--out", str(tmp_path / "o2"), "--record", str(record)]) == 2  # fmt: skip


RECORD_KEYS = {
    "stedgeai": [
        "source", "tool_version", "tool_version_cli", "argv", "duration_s", "json_schema_version", "weights_bytes",
        "activations_bytes", "rom_bytes", "rom_formula", "ram_bytes", "ram_formula", "macc", "null_fields",
        "internal_ram_bytes", "external_ram_bytes", "text_report", "generated_files",
    ],
    "estimator": [
        "source", "tool_version", "weights_bytes", "activations_bytes", "activations_tflm_bytes", "macc",
        "generated_files",
    ],
}  # fmt: skip
COMMON_KEYS = ["target", "model_sha256", "latency_ms", "latency_source", "fits", "estimator", "runtime",
               "tflm"]  # fmt: skip


def test_the_record_is_the_typed_conversion_in_a_fixed_key_order(
    fake_stedgeai: Path, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aed.footprint import estimate
    from aed.stedgeai import ConversionRecord, StedgeaiFigures, conversion_record, estimator_figures

    record = run(ConvertParams(), model, "stm32u5", tmp_path / "out", tmp_path / "u5.json")
    assert list(record) == RECORD_KEYS["stedgeai"] + COMMON_KEYS
    written = json.loads((tmp_path / "u5.json").read_text())
    assert list(written)[-len(record) :] == list(record)
    # the tool's paths are where the output is, not the temporary folder it was written in
    assert record["argv"][record["argv"].index("--output") + 1] == str(tmp_path / "out" / "stedgeai")

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    record = run(ConvertParams(), model, "stm32n6", tmp_path / "est", None)
    assert list(record) == RECORD_KEYS["estimator"] + COMMON_KEYS
    estimated = estimate(model, "stm32n6", tool_version="2.0.0")
    typed = conversion_record(estimator_figures(estimated), "stm32n6", estimated)
    assert isinstance(typed, ConversionRecord) and not isinstance(typed.figures, StedgeaiFigures)
    assert typed.figures.macc == record["macc"] and typed.latency_ms == record["latency_ms"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        typed.target = "stm32u5"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            "targets: {tiny: stm32h7}",
            "convert.targets.tiny: expected one of ['stm32u5', 'stm32n6'], got 'stm32h7'",
        ),
        ("targets: {tiny: [stm32u5]}", "convert.targets.tiny: expected one of"),
        ("name: ../escape", "convert.name: '../escape' is not a C identifier"),
        ("name: ''", "convert.name: '' is not a C identifier"),
        ("name: 'net work'", "convert.name: 'net work' is not a C identifier"),
        ("timeout_s: 0", "convert.timeout_s: 0.0 is out of range"),
        ("use_stedgeai: sometimes", "convert.use_stedgeai: expected one of"),
        ("targets: {}", "convert.targets: no target for model 'tiny'"),
    ],
)
def test_bad_convert_params_are_one_line_and_nothing_is_written(
    fake_stedgeai: Path, model: Path, tmp_path: Path, capsys, section: str, message: str
) -> None:
    params = tmp_path / "params.yaml"
    lines = [section] if section.startswith("targets") else ["targets: {tiny: stm32u5}", section]
    params.write_text("convert:\n" + "".join(f"  {line}\n" for line in lines))
    code = aed_main(["convert", "--params", str(params), "--model", str(model), "--model-name", "tiny",
                     "--out", str(tmp_path / "out"), "--record", str(tmp_path / "convert.json")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "convert.json").exists()
    assert not (tmp_path / "escape_c_info.json").exists()
    assert not (tmp_path / "fake_args.jsonl").exists()  # the tool never ran


def test_cli_stedgeai_flag_overrides_the_params_and_target_needs_a_source(
    fake_stedgeai: Path, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # only --stedgeai finds the tool
    params = tmp_path / "params.yaml"
    params.write_text("convert:\n  use_stedgeai: require\n")
    args = ["convert", "--params", str(params), "--model", str(model), "--out", str(tmp_path / "out"),
            "--record", str(tmp_path / "convert.json")]  # fmt: skip
    assert aed_main([*args, "--target", "stm32n6", "--stedgeai", str(fake_stedgeai)]) == 0
    assert json.loads((tmp_path / "convert.json").read_text())["source"] == "stedgeai"
    capsys.readouterr()
    assert aed_main([*args, "--stedgeai", str(fake_stedgeai)]) == 2
    assert "give --model-name" in capsys.readouterr().err
