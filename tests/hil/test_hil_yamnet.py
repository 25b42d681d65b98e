"""Targets on the reference architecture: int8 YAMNet-256 (pretrained backbone from the shared mirror) on the
virtual U5 agrees with host LiteRT on 100% of patches and reports 281.95 ms within 2%, labelled virtual."""

from __future__ import annotations

import numpy as np
import pytest

from hil_runner.boards.inventory import Board
from hil_runner.boards.profiles import get_profile
from hil_runner.farm.local import LocalFarm
from hil_runner.job import EvalSet, JobConfig, run_job
from hil_runner.protocol.host import Timeouts

ST_U5_LATENCY_MS = 281.95


@pytest.mark.slow
def test_yamnet_256_agreement_and_latency_on_virtual_u5(yamnet_dir, vboard_factory, tmp_path) -> None:
    from aed.models import build_yamnet_256
    from aed.quantize import to_int8_tflite

    rng = np.random.default_rng(0)
    model_path = tmp_path / "yamnet_256_int8.tflite"
    calibration = rng.normal(-2.0, 2.0, size=(32, 64, 96, 1)).astype(np.float32)
    to_int8_tflite(build_yamnet_256(10, pretrained=True), calibration, model_path)

    patches = rng.normal(-2.0, 2.0, size=(40, 64, 96, 1)).astype(np.float32)
    evalset = EvalSet(patches=patches, clip_ids=np.repeat(np.arange(8), 5).astype(str),
                      labels=np.repeat(np.arange(8) % 10, 5), class_names=[f"c{i}" for i in range(10)])  # fmt: skip
    slot = tmp_path / "slot.tflite"
    vb = vboard_factory("b-u585i-iot02a", slot=slot)
    board = Board(
        name="vb-u5", profile=get_profile("b-u585i-iot02a"), port=vb.descriptor, virtual=True, slot=slot
    )
    config = JobConfig(profile="b-u585i-iot02a", latency_repeats=5, progress=False,
                       exchange_timeouts=Timeouts(settle=0.05))  # fmt: skip
    record = run_job(
        model_path, evalset, LocalFarm([board], tmp_path / "locks"), config, tmp_path / "hil.json"
    )

    assert record["source"] == "virtual" and record["latency"]["source"] == "virtual"
    assert record["fidelity"]["top1_agreement"] == 1.0 and record["fidelity"]["bit_exact_fraction"] == 1.0
    assert record["metrics"]["latency_median_ms"] == pytest.approx(ST_U5_LATENCY_MS, rel=0.02)
    assert record["metrics"]["macs"] == pytest.approx(23.93e6, rel=0.01)
    assert record["memory"]["weights_bytes"] == pytest.approx(139_176, rel=0.01)
    assert record["metrics"]["cycles_median"] == pytest.approx(45.1e6, rel=0.02)
    assert len(record["layers"]) > 5 and record["model"]["signature_verified"]
