"""The `hil` step entry point: model resolution, the local farm from a boards.yaml inventory, N6 figures."""

from __future__ import annotations

import shutil

import pytest

from aed.footprint import estimate
from components.hil import HilParams, resolve_model
from components.hil import run as hil_run


def test_resolve_model(tmp_path, tiny_model) -> None:
    assert resolve_model(tiny_model, None) == tiny_model
    with pytest.raises(ValueError, match=r"expected exactly one int8 .tflite \(or QDQ .onnx\) .* found \[\]"):
        resolve_model(None, tmp_path)
    shutil.copy(tiny_model, tmp_path / "a.tflite")
    assert resolve_model(None, tmp_path) == tmp_path / "a.tflite"
    shutil.copy(tiny_model, tmp_path / "b.tflite")
    with pytest.raises(ValueError, match=r"found \['a.tflite', 'b.tflite'\]"):
        resolve_model(None, tmp_path)


def test_local_farm_from_inventory_on_an_n6(vboard_factory, tiny_model, patch_store, tmp_path) -> None:
    slot = tmp_path / "slots" / "n6.tflite"
    board = vboard_factory("stm32n6570-dk", slot=slot)
    inventory = tmp_path / "boards.yaml"
    inventory.write_text(
        f"boards:\n  - {{name: n6-virtual, profile: stm32n6570-dk, port: '{board.descriptor}', flash: none,"
        f" virtual: true, slot: slots/n6.tflite}}\n"
    )
    params = HilParams(profile="b-u585i-iot02a", profiles={"yamnet_1024": "stm32n6570-dk"}, farm="local",
                       inventory=inventory, lock_dir=tmp_path / "locks", latency_repeats=2, settle_s=0.05)  # fmt: skip
    out = tmp_path / "hil.json"
    metrics = hil_run(
        params, patch_store, out, model_path=tiny_model, model_name="yamnet_1024", progress=False
    )
    expected = estimate(tiny_model, "stm32n6")
    assert metrics["board"] == "n6-virtual" and metrics["source"] == "virtual"
    assert metrics["latency_median_ms"] == pytest.approx(expected["latency"]["ms"], rel=1e-6)
    assert metrics["top1_agreement"] == 1.0 and out.exists()
    assert not list((tmp_path / "locks").glob("*.lock"))  # the board lock was released


def test_qdq_onnx_model_on_a_virtual_n6(vboard_factory, tiny_qdq_onnx, patch_store, tmp_path) -> None:
    """The YAMNet-1024 format: float32 I/O around QDQ int8, onnxruntime on both sides (bit-exact)."""
    slot = tmp_path / "slots" / "n6.tflite"  # a slot keeps its name whatever it holds: formats go by content
    board = vboard_factory("stm32n6570-dk", slot=slot)
    inventory = tmp_path / "boards.yaml"
    inventory.write_text(
        f"boards:\n  - {{name: n6-virtual, profile: stm32n6570-dk, port: '{board.descriptor}', flash: none,"
        f" virtual: true, slot: slots/n6.tflite}}\n"
    )
    params = HilParams(profile="stm32n6570-dk", farm="local", inventory=inventory, lock_dir=tmp_path / "locks",
                       latency_repeats=2, settle_s=0.05)  # fmt: skip
    out = tmp_path / "hil.json"
    metrics = hil_run(params, patch_store, out, model_path=tiny_qdq_onnx, progress=False)
    expected = estimate(tiny_qdq_onnx, "stm32n6")
    assert metrics["top1_agreement"] == 1.0 and metrics["l2r_max"] == 0.0
    assert metrics["latency_median_ms"] == pytest.approx(expected["latency"]["ms"], rel=1e-6)
    assert metrics["weights_bytes"] == expected["weights_bytes"]
    import json

    record = json.loads(out.read_text())
    assert record["key"]["kernels"].startswith("onnxruntime-") and record["source"] == "virtual"
