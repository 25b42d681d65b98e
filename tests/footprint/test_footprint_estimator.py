"""The estimator's contract (keys the virtual board and the convert step read) and its figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aed.footprint import ModelFormatError, NotQuantizedError, estimate, load_graph
from aed.footprint import estimator as estimator_module
from aed.footprint.estimator import layer_table, plan_activations
from aed.footprint.latency import (
    CALIBRATIONS,
    KIB,
    LATEST,
    YAMNET_256,
    YAMNET_1024,
    latency_model,
    n6_blob_bytes,
)
from aed.footprint.planner import plan_improved
from aed.footprint.replay import UnsafePlanError, replay
from aed.records import sha256_file

ST_WEIGHTS_KIB_256 = 135.91
ST_U5_ACTIVATIONS_KIB = 109.57
MACS_256, MACS_1024 = 23_927_296, 68_647_936


@pytest.mark.parametrize("target", ["stm32u5", "stm32n6"])
def test_contract_keys(tiny_int8: Path, target: str) -> None:
    result = estimate(tiny_int8, target)
    json.dumps(result)  # JSON-ready
    assert result["source"] == "estimator" and result["target"] == target
    for section in ("weights", "activations", "latency", "budget"):
        assert result[section]["source"] == "estimator"  # simulated figures are labelled everywhere
    assert result["schema_version"] >= 1
    assert result["model_sha256"] == sha256_file(tiny_int8)
    assert {"arena_tflm_bytes", "improved_bytes"} <= set(result["activations"])
    assert {"ms", "cycles", "clock_hz", "model"} <= set(result["latency"])
    assert result["latency"]["ms"] > 0
    for layer in result["layers"]:
        assert {"index", "op", "name", "macs", "cycles", "latency_ms", "output_shape"} <= set(layer)
    assert sum(layer["macs"] for layer in result["layers"]) == result["macs_total"]
    budget = result["budget"]
    assert {"fits", "flash_margin_bytes", "ram_margin_bytes", "device"} <= set(budget)
    assert budget["fits"] == (budget["flash_margin_bytes"] >= 0 and budget["ram_margin_bytes"] >= 0)


def test_tiny_model_macs_by_hand(tiny_int8: Path) -> None:
    """16x12x3 -> conv3x3/s2 8ch (8x6x8) -> dw3x3 -> pw 8 -> add -> avgpool2 (4x3x8) -> GAP -> dense 4."""
    by_op: dict[str, int] = {}
    result = estimate(tiny_int8, "stm32u5")
    for layer in result["layers"]:
        by_op[layer["op"]] = by_op.get(layer["op"], 0) + layer["macs"]
    assert by_op["CONV_2D"] == 8 * 6 * 8 * 3 * 3 * 3 + 8 * 6 * 8 * 8
    assert by_op["DEPTHWISE_CONV_2D"] == 8 * 6 * 8 * 9
    assert by_op["ADD"] == 8 * 6 * 8
    assert by_op["AVERAGE_POOL_2D"] == 4 * 3 * 8 * 4
    assert by_op["MEAN"] == 4 * 3 * 8
    assert by_op["FULLY_CONNECTED"] == 8 * 4
    assert result["macs_total"] == sum(by_op.values())


def test_yamnet256_targets(yamnet256_int8: Path) -> None:
    result = estimate(yamnet256_int8, "stm32u5")
    assert abs(result["weights_bytes"] / 1024 - ST_WEIGHTS_KIB_256) / ST_WEIGHTS_KIB_256 < 0.001
    assert abs(result["macs_total"] - MACS_256) / MACS_256 < 0.02
    assert result["activations"]["arena_tflm_bytes"] == 144 * 1024  # block-2 pointwise in + out
    assert result["activations"]["improved_bytes"] <= ST_U5_ACTIVATIONS_KIB * 1024
    assert result["activations"]["improved_replay"] == "passed"
    assert result["peak_layer"]["op"] == "CONV_2D"
    assert result["latency"]["ms"] == pytest.approx(279.99, rel=0.01)  # ST Edge AI Core 3.0.0 (the default)
    assert result["budget"]["fits"]
    n6 = estimate(yamnet256_int8, "stm32n6", calibration="2.0.0")
    assert n6["latency"]["ms"] == pytest.approx(1.07, rel=0.02)


@pytest.mark.slow
def test_yamnet1024_targets(yamnet1024_int8: Path) -> None:
    u5 = estimate(yamnet1024_int8, "stm32u5")
    assert abs(u5["macs_total"] - MACS_1024) / MACS_1024 < 0.02
    assert abs(u5["weights_bytes"] / 1024 - 3162.66) / 3162.66 < 0.001
    assert not u5["budget"]["flash_fits"]  # 3.09 MiB of weights > 2 MB: an N6 model
    n6 = estimate(yamnet1024_int8, "stm32n6", calibration="2.0.0")
    assert n6["budget"]["fits"]
    assert n6["latency"]["ms"] == pytest.approx(9.88, rel=0.02)
    assert estimate(yamnet1024_int8, "stm32n6")["latency"]["ms"] == pytest.approx(9.12, rel=0.02)
    graph = load_graph(yamnet1024_int8)
    plan = plan_improved(graph)
    replay(graph, plan)
    assert plan.head == n6["activations"]["improved_bytes"] < n6["activations"]["arena_tflm_bytes"]


def test_not_a_model(tmp_path: Path) -> None:
    junk = tmp_path / "model.tflite"
    junk.write_bytes(b"this is not a flatbuffer at all")
    with pytest.raises(ModelFormatError, match="model.tflite.*not a TFLite"):
        estimate(junk, "stm32u5")
    text = tmp_path / "model.onnx"
    text.write_text("hello")
    with pytest.raises(ModelFormatError, match="model.onnx"):
        estimate(text, "stm32u5")
    with pytest.raises(ModelFormatError, match="unsupported model type"):
        estimate(_touch(tmp_path / "m.h5"), "stm32u5")
    with pytest.raises(FileNotFoundError):
        estimate(tmp_path / "missing.tflite", "stm32u5")


def _touch(path: Path) -> Path:
    path.write_bytes(b"\0")
    return path


def test_float_model_needs_explicit_request(tiny_float: Path) -> None:
    with pytest.raises(NotQuantizedError, match="not int8-quantized"):
        estimate(tiny_float, "stm32u5")
    result = estimate(tiny_float, "stm32u5", allow_float=True)
    assert result["quantization"] == "float32"
    graph = load_graph(tiny_float)
    weights = sum(t.nbytes for t in graph.tensors if t.is_constant and t.role in ("weight", "bias"))
    assert result["weights_bytes"] == weights and weights % 4 == 0


def test_unknown_target(tiny_int8: Path) -> None:
    with pytest.raises(ValueError, match="unknown target 'stm32h7'"):
        estimate(tiny_int8, "stm32h7")


def test_cli_reports_bad_input_in_one_line(tmp_path: Path, tiny_float: Path, capsys) -> None:
    from components.cli import main

    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"nope")
    assert main(["estimate", str(junk), "--target", "stm32u5"]) == 2
    assert "junk.tflite: not a TFLite flatbuffer" in capsys.readouterr().err
    assert main(["estimate", str(tiny_float), "--target", "stm32u5"]) == 2
    assert "not int8-quantized" in capsys.readouterr().err
    assert main(["estimate", str(tiny_float), "--target", "stm32u5", "--allow-float", "--json"]) == 0
    assert '"quantization": "float32"' in capsys.readouterr().out


def test_unsafe_improved_plan_falls_back_to_greedy(tiny_int8: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def clobbering_replay(graph, plan) -> None:
        raise UnsafePlanError("op 2 overwrites a live input")

    monkeypatch.setattr(estimator_module, "replay", clobbering_replay)
    plans = plan_activations(load_graph(tiny_int8))
    assert plans.improved is plans.greedy
    assert plans.replay_status == "failed, greedy figure reported instead: op 2 overwrites a live input"
    activations = estimate(tiny_int8, "stm32u5")["activations"]
    assert activations["improved_bytes"] == activations["arena_tflm_bytes"]
    assert activations["improved_replay"].startswith("failed, greedy figure reported instead")


def test_layer_table_total_is_the_sum_of_its_rows(tiny_int8: Path) -> None:
    model = latency_model("stm32u5")
    table = layer_table(load_graph(tiny_int8), model)
    assert [row["index"] for row in table.rows] == sorted(row["index"] for row in table.rows)
    total = 0.0
    for row in table.rows:
        total += row["latency_ms"] / 1e3
    assert table.total_seconds == pytest.approx(total, rel=1e-12)
    assert estimate(tiny_int8, "stm32u5")["latency"]["ms"] == table.total_seconds * 1e3


def test_record_key_order(tiny_int8: Path) -> None:
    """Records are compared byte for byte (dvc.lock hashes): the key order is part of the contract."""
    n6 = estimate(tiny_int8, "stm32n6")
    assert list(n6) == [
        "schema_version", "source", "estimator_version", "model", "model_format", "model_sha256", "target",
        "quantization", "weights_bytes", "weights_kib", "weights", "activations", "macs_total", "peak_layer",
        "latency", "layers", "budget", "calibration", "elapsed_s",
    ]  # fmt: skip
    assert list(n6["weights"])[-2:] == ["source", "npu_blob_bytes_calibrated"]
    assert list(n6["latency"]) == ["ms", "cycles", "clock_hz", "model", "calibration", "source"]
    assert list(n6["budget"])[-1] == "source"
    assert "npu_blob_bytes_calibrated" not in estimate(tiny_int8, "stm32u5")["weights"]


# -- calibrations per ST Edge AI Core version ---------------------------------------------------------------------
PUBLISHED_MS = {  # (U5 YAMNet-256, N6 YAMNet-256, N6 YAMNet-1024), from the model zoo cards
    "2.0.0": (281.95, 1.07, 9.88),
    "3.0.0": (279.99, 0.93, 9.12),
}


@pytest.mark.parametrize("version", sorted(PUBLISHED_MS))
def test_each_calibration_reproduces_its_published_points(version: str) -> None:
    """Consistency only: the constants are derived from these very points."""
    u5_256, n6_256, n6_1024 = PUBLISHED_MS[version]
    u5, n6 = latency_model("stm32u5", version), latency_model("stm32n6", version)
    assert 1e3 * u5.layer_seconds("CONV_2D", YAMNET_256["macs"], 0) == pytest.approx(u5_256, rel=1e-12)
    assert 1e3 * n6.layer_seconds("CONV_2D", *YAMNET_256.values()) == pytest.approx(n6_256, rel=1e-12)
    assert 1e3 * n6.layer_seconds("CONV_2D", *YAMNET_1024.values()) == pytest.approx(n6_1024, rel=1e-12)
    assert version in u5.calibration and version in n6.calibration


def test_calibrations_differ_and_the_newest_is_the_default(tiny_int8: Path) -> None:
    assert LATEST == "3.0.0" == max(CALIBRATIONS)
    old, new = (estimate(tiny_int8, "stm32n6", calibration=v) for v in ("2.0.0", "3.0.0"))
    assert estimate(tiny_int8, "stm32n6")["latency"] == new["latency"] != old["latency"]
    assert old["weights"]["npu_blob_bytes_calibrated"] > new["weights"]["npu_blob_bytes_calibrated"]
    for version, record in (("2.0.0", old), ("3.0.0", new)):
        assert record["calibration"]["stedgeai_version"] == version
        assert "proves only that the code is consistent" in record["calibration"]["note"]
        assert record["latency"]["calibration"].startswith(version)


def test_n6_blob_2_0_passes_through_st_points() -> None:
    assert n6_blob_bytes(round(135.91 * KIB), "2.0.0") == pytest.approx(176.59 * KIB, abs=2)
    assert n6_blob_bytes(round(3162.66 * KIB), "2.0.0") == pytest.approx(3497.24 * KIB, abs=2)


def test_unknown_calibration_is_refused(tiny_int8: Path) -> None:
    with pytest.raises(
        ValueError, match=r"unknown estimator calibration '1.0.0'; known: \['2.0.0', '3.0.0'\]"
    ):
        estimate(tiny_int8, "stm32u5", calibration="1.0.0")
