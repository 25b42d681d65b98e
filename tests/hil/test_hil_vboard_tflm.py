"""The virtual board's TFLM runtime: a model carrying TFLM's offline plan runs in tflite-micro, the board reports
TFLM's measured arena as its RAM, and its outputs stay bit-exact with the host's LiteRT reference kernels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aed.footprint import estimate, load_graph
from aed.footprint.estimator import plan_activations
from aed.footprint.tflm import embed_offline_plan, offline_offsets, smallest_arena
from hil_runner.boards.profiles import get_profile
from hil_runner.litert import LiteRTModel
from hil_runner.protocol.host import Timeouts, ValidationClient
from hil_runner.transport import open_transport
from hil_runner.vboard.model import VirtualModel
from hil_runner.vboard.tflm import TflmModel, wants_tflm

FAST = Timeouts(settle=0.05)


@pytest.fixture(scope="module")
def planned_model(tiny_model: Path, tmp_path_factory) -> Path:
    graph = load_graph(tiny_model)
    path = tmp_path_factory.mktemp("tflm") / "tiny_tflm.tflite"
    embed_offline_plan(tiny_model, path, offline_offsets(graph, plan_activations(graph).improved))
    return path


def _inputs(spec, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(-128, 128, size=spec.shape).astype(spec.dtype) for _ in range(n)]


def test_a_planned_model_runs_in_tflm_with_its_measured_arena(vboard_factory, planned_model: Path) -> None:
    board = vboard_factory("b-u585i-iot02a", model=planned_model)
    host = LiteRTModel(planned_model)  # LiteRT ignores the offline plan: the host's reference stays LiteRT
    arena = smallest_arena(planned_model.read_bytes())
    with open_transport(board.descriptor) as link:
        client = ValidationClient(link, FAST)
        client.connect()
        [model] = client.models()
        assert (
            model.activations_bytes == arena.bytes
        )  # the runtime the board runs, not the estimator's figure
        assert model.weights_bytes == estimate(planned_model, "stm32u5")["weights_bytes"]
        assert "tflm-reference" in model.runtime_desc
        for number, x in enumerate(_inputs(model.inputs[0], 5)):
            result = client.run(model, [x], first=number == 0)
            np.testing.assert_array_equal(result.outputs[0], host.run([x])[0])  # bit-exact with the host


def test_runtime_choice(tiny_model: Path, planned_model: Path) -> None:
    profile = get_profile("b-u585i-iot02a")
    assert wants_tflm(planned_model, "auto") and not wants_tflm(tiny_model, "auto")
    assert not wants_tflm(planned_model, "litert") and wants_tflm(tiny_model, "tflm")
    litert = VirtualModel(planned_model, profile, runtime="litert")
    assert not isinstance(litert.runtime, TflmModel)
    assert litert.activations_bytes == estimate(planned_model, "stm32u5")["activations"]["arena_tflm_bytes"]
    unplanned = VirtualModel(tiny_model, profile, runtime="tflm")  # TFLM's own online plan
    assert isinstance(unplanned.runtime, TflmModel)
    assert unplanned.activations_bytes == smallest_arena(tiny_model.read_bytes()).bytes
    with pytest.raises(ValueError, match="unknown virtual-board runtime 'tflite'"):
        VirtualModel(tiny_model, profile, runtime="tflite")


def test_tflm_runtime_refuses_an_onnx_model(tiny_qdq_onnx: Path) -> None:
    assert not wants_tflm(tiny_qdq_onnx, "auto")
    with pytest.raises(ValueError, match="int8 .tflite models only"):
        TflmModel(tiny_qdq_onnx)


def test_vboard_cli_refuses_an_unknown_runtime(tiny_model: Path, capsys) -> None:
    from hil_runner.vboard.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["--profile", "b-u585i-iot02a", "--model", str(tiny_model), "--runtime", "tflite"])
    assert stopped.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
