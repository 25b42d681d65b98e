"""`aed hil run --dvc-metrics`: the compared figures of the record, apart from its provenance (issue 17, point 8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.hil import HilParams
from components.hil import run as hil_run

COMPARED = {"board_acc", "agreement", "latency_ms", "ram_bytes", "flash_bytes"}


def _n6_params(vboard_factory, tmp_path: Path) -> HilParams:
    board = vboard_factory("stm32n6570-dk", slot=tmp_path / "slots" / "n6.tflite")
    inventory = tmp_path / "boards.yaml"
    inventory.write_text(
        f"boards:\n  - {{name: n6-virtual, profile: stm32n6570-dk, port: '{board.descriptor}', flash: none,"
        f" virtual: true, slot: slots/n6.tflite}}\n"
    )
    return HilParams(profile="stm32n6570-dk", farm="local", inventory=inventory, lock_dir=tmp_path / "locks",
                     latency_repeats=2, settle_s=0.05)  # fmt: skip


def test_hil_writes_the_compared_figures_of_its_record(
    vboard_factory, tiny_model, patch_store, tmp_path
) -> None:
    params = _n6_params(vboard_factory, tmp_path)
    record_path, figures_path = (
        tmp_path / "reports" / "hil_m.json",
        tmp_path / "reports" / "metrics" / "hil_m.json",
    )
    hil_run(params, patch_store, tiny_model, None, record_path, progress=False, dvc_metrics_path=figures_path)
    record, figures = json.loads(record_path.read_text()), json.loads(figures_path.read_text())
    assert set(figures) == COMPARED
    assert figures["flash_bytes"] == record["metrics"]["weights_bytes"]
    assert figures["ram_bytes"] == record["metrics"]["activations_bytes"]
    assert figures["latency_ms"] == round(record["metrics"]["latency_median_ms"], 2)
    assert "tools" in record and "created" in record  # provenance stays in the record only


@pytest.mark.parametrize("where", ["the record itself", "a folder"])
def test_a_figures_path_that_would_clobber_is_refused_before_the_job(
    tiny_model, patch_store, tmp_path, where: str
) -> None:
    record_path = tmp_path / "hil.json"
    figures_path = record_path if where == "the record itself" else tmp_path
    with pytest.raises(ValueError, match="--dvc-metrics"):
        hil_run(
            HilParams(),
            patch_store,
            tiny_model,
            None,
            record_path,
            progress=False,
            dvc_metrics_path=figures_path,
        )
    assert not record_path.exists()
