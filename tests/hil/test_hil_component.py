"""The `hil` step entry point: its signature and settings, model resolution, the local farm from a boards.yaml
inventory, N6 figures."""

from __future__ import annotations

import ast
import inspect
import json
import shutil
from pathlib import Path

import pytest

import components.hil
import hil_runner.job
from aed.footprint import estimate
from components.cli import main as aed_main
from components.hil import HilParams, resolve_model
from components.hil import run as hil_run


def test_run_takes_params_first_then_inputs_then_the_record_path() -> None:
    names = list(inspect.signature(hil_run).parameters)
    assert names[:5] == ["params", "patches_dir", "model_path", "quantized_dir", "record_path"]


def test_the_step_reads_the_job_settings_and_declares_none_of_its_own() -> None:
    assert components.hil.HilParams is hil_runner.job.HilParams
    tree = ast.parse(Path(components.hil.__file__).read_text())
    classes = [node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    assert classes == []  # the `hil` settings (and their limits) are declared once, in hil_runner.job


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
    inventory = _n6_inventory(vboard_factory, tmp_path)
    params = HilParams(profile="b-u585i-iot02a", profiles={"yamnet_1024": "stm32n6570-dk"}, farm="local",
                       inventory=inventory, lock_dir=tmp_path / "locks", latency_repeats=2, settle_s=0.05)  # fmt: skip
    out = tmp_path / "hil.json"
    metrics = hil_run(params, patch_store, tiny_model, None, out, model_name="yamnet_1024", progress=False)
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
    metrics = hil_run(params, patch_store, tiny_qdq_onnx, None, record_path=out, progress=False)
    expected = estimate(tiny_qdq_onnx, "stm32n6")
    assert metrics["top1_agreement"] == 1.0 and metrics["l2r_max"] == 0.0
    assert metrics["latency_median_ms"] == pytest.approx(expected["latency"]["ms"], rel=1e-6)
    assert metrics["weights_bytes"] == expected["weights_bytes"]
    import json

    record = json.loads(out.read_text())
    assert record["key"]["kernels"].startswith("onnxruntime-") and record["source"] == "virtual"


def _n6_inventory(vboard_factory, tmp_path: Path) -> Path:
    slot = tmp_path / "slots" / "n6.tflite"
    board = vboard_factory("stm32n6570-dk", slot=slot)
    inventory = tmp_path / "boards.yaml"
    inventory.write_text(
        f"boards:\n  - {{name: n6-virtual, profile: stm32n6570-dk, port: '{board.descriptor}', flash: none,"
        f" virtual: true, slot: slots/n6.tflite}}\n"
    )
    return inventory


def test_cli_options_override_the_loaded_settings(vboard_factory, tiny_model, patch_store, tmp_path, capsys):
    """--boards, --farm and --max-patches replace hil.profile, hil.farm and hil.max_patches; the other keys of
    the section (here latency_repeats, settle_s, lock_dir) still reach the job; --quantized-dir finds the model."""
    inventory = _n6_inventory(vboard_factory, tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text(
        f"hil:\n  farm: virtual\n  inventory: {inventory}\n  lock_dir: {tmp_path / 'locks'}\n"
        "  latency_repeats: 2\n  settle_s: 0.05\n  max_patches: 0\n"
    )
    quantized = tmp_path / "quantized"
    quantized.mkdir()
    shutil.copy(tiny_model, quantized / "model_int8.tflite")
    out = tmp_path / "hil.json"
    argv = ["hil", "run", "--params", str(params), "--quantized-dir", str(quantized), "--patches", str(patch_store),
            "--out", str(out), "--boards", "stm32n6570-dk", "--farm", "local", "--max-patches", "7",
            "--no-progress"]  # fmt: skip
    assert aed_main(argv) == 0
    record = json.loads(out.read_text())
    assert record["board"]["name"] == "n6-virtual" and record["key"]["profile"] == "stm32n6570-dk"
    assert record["key"]["eval_patches"] == 6  # whole clips of 3 patches within 7
    assert record["latency"]["repeats"] == 2
    assert record["model"]["path"] == str(quantized / "model_int8.tflite")
    assert f"hil: {out}: source=virtual, board=n6-virtual" in capsys.readouterr().out
    assert not list((tmp_path / "locks").glob("*.lock"))


def test_an_unknown_boards_option_is_one_clear_line(tiny_model, patch_store, tmp_path, capsys) -> None:
    argv = ["hil", "run", "--params", str(tmp_path / "params.yaml"), "--model", str(tiny_model), "--patches",
            str(patch_store), "--out", str(tmp_path / "hil.json"), "--boards", "nucleo-nope"]  # fmt: skip
    (tmp_path / "params.yaml").write_text("hil:\n  latency_repeats: 1\n")
    assert aed_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aed hil run: error: --boards 'nucleo-nope': unknown board profile; known: [")
    assert len(err.splitlines()) == 1 and not (tmp_path / "hil.json").exists()
