"""The virtual board answers the protocol like the firmware: identity, model info from the estimator, outputs from
LiteRT reference kernels, per-layer and perf modes, error paths. Driven by the real host client over a pty / TCP."""

from __future__ import annotations

import numpy as np
import pytest

from aed.footprint import estimate
from aed.records import sha256_file
from hil_runner.errors import DeviceError
from hil_runner.litert import LiteRTModel
from hil_runner.protocol import constants as c
from hil_runner.protocol import pb
from hil_runner.protocol.host import Timeouts, ValidationClient
from hil_runner.transport import open_transport

FAST = Timeouts(settle=0.05)


def _inputs(spec, n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, size=spec.shape).astype(spec.dtype) for _ in range(n)]


@pytest.mark.parametrize("tcp", [False, True], ids=["pty", "tcp"])
def test_u5_identity_model_info_and_outputs(vboard_factory, tiny_model, tcp: bool) -> None:
    board = vboard_factory("b-u585i-iot02a", model=tiny_model, tcp=tcp)
    host = LiteRTModel(tiny_model)
    expected = estimate(tiny_model, "stm32u5")
    with open_transport(board.descriptor) as link:
        client = ValidationClient(link, FAST)
        device = client.connect()
        assert (device.devid, device.sclock_hz, device.hclock_hz, device.cache) == (
            0x482,
            160e6,
            160e6,
            0x04010200,
        )
        assert device.protocol_version == "3.1" and device.rtid == 0x010101
        [model] = client.models()
        assert model.name == "network" and model.signature == sha256_file(tiny_model)
        assert model.n_macc == expected["macs_total"]
        assert model.weights_bytes == expected["weights_bytes"]
        assert model.activations_bytes == expected["activations"]["arena_tflm_bytes"]
        assert model.inputs[0].shape == (1, 64, 96, 1) and model.inputs[0].scale == pytest.approx(
            host.inputs[0].scale
        )
        assert model.runtime_desc.startswith("virtual board")
        for number, x in enumerate(_inputs(model.inputs[0], 5)):
            result = client.run(model, [x], first=number == 0)
            np.testing.assert_array_equal(result.outputs[0], host.run([x])[0])  # same kernels: bit-exact
            assert result.duration_ms == pytest.approx(expected["latency"]["ms"], rel=1e-6)
            assert result.cycles == round(expected["latency"]["ms"] * 1e-3 * 160e6)


def test_n6_reports_npu_and_nic_clocks(vboard_factory, tiny_model) -> None:
    board = vboard_factory("stm32n6570-dk", model=tiny_model)
    assert board.descriptor.endswith(":921600")
    with open_transport(board.descriptor) as link:
        device = ValidationClient(link, FAST).connect()
    assert device.devid == 0x486 and device.extra == (0, 1_000_000_000, 900_000_000)


def test_per_layer_perf_and_debug_modes(vboard_factory, tiny_model) -> None:
    board = vboard_factory(model=tiny_model)
    expected = estimate(tiny_model, "stm32u5")
    with open_transport(board.descriptor) as link:
        client = ValidationClient(link, FAST)
        client.connect()
        [model] = client.models()
        [x] = _inputs(model.inputs[0], 1)
        layered = client.run(model, [x], mode=c.RUN_IO_ONLY | c.RUN_PER_LAYER | c.RUN_CONF_DEBUG)
        assert [layer.name for layer in layered.layers] == [
            layer["name"][:64] for layer in expected["layers"]
        ]
        assert layered.duration_ms == pytest.approx(expected["latency"]["ms"], rel=1e-5)
        assert len(layered.outputs) == 1  # the debug log was acknowledged and the run completed
        perf = client.run(model, [x], mode=c.RUN_PERF)
        assert perf.outputs == [] and perf.duration_ms == pytest.approx(expected["latency"]["ms"], rel=1e-6)
        # the session is still in sync after every mode
        assert client.run(model, [x]).outputs[0].shape == (1, 10)


def test_unknown_command_and_missing_model(vboard_factory, tiny_model, tmp_path) -> None:
    board = vboard_factory(slot=tmp_path / "empty-slot.tflite")  # nothing flashed yet
    with open_transport(board.descriptor) as link:
        client = ValidationClient(link, FAST)
        client.connect()
        with pytest.raises(DeviceError, match="not initialised"):
            client.models()
        with pytest.raises(DeviceError, match="E_INVALID_PARAM"):
            client._call(pb.CMD_TEST_UNSUPPORTED, "ack", 0.5)


def test_flashing_the_slot_loads_the_model(vboard_factory, tiny_model, tiny_model_b, tmp_path) -> None:
    from hil_runner.boards.flash import FlashTarget, NoFlash
    from hil_runner.boards.profiles import get_profile

    slot = tmp_path / "slot.tflite"
    board = vboard_factory(model=tiny_model, slot=slot)
    target = FlashTarget(board="vb", profile=get_profile("b-u585i-iot02a"), slot=slot)
    NoFlash().flash(tiny_model_b, target, timeout=60)
    with open_transport(board.descriptor) as link:
        client = ValidationClient(link, FAST)
        client.connect()
        assert client.models()[0].signature == sha256_file(tiny_model_b)


def test_aed_cli_exposes_hil_and_gate() -> None:
    from components.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["hil", "vboard", "--profile", "stm32n6570-dk", "--model", "m.tflite", "--tcp",
                              "127.0.0.1:0", "--fault", "drop=2", "--fault", "noise=0.1"])  # fmt: skip
    assert args.profile == "stm32n6570-dk" and args.fault == ["drop=2", "noise=0.1"] and args.handler
    args = parser.parse_args(["hil", "run", "--quantized-dir", "q", "--model-name", "yamnet_256"])
    assert args.quantized_dir.name == "q" and args.handler
    args = parser.parse_args(["gate", "--record", "r.json", "--accept"])
    assert args.accept and args.handler


def test_fault_specs_are_validated() -> None:
    from hil_runner.vboard.faults import parse_faults

    plan = parse_faults(["drop=2,noise=0.05", "version=4.0"])
    assert plan.drop == 2 and plan.noise == 0.05 and plan.version_word == 0x0400
    assert plan.at("drop", 2) and not plan.at("drop", 1)
    with pytest.raises(ValueError, match="fault 'explode=1'"):
        parse_faults(["explode=1"])
    with pytest.raises(ValueError, match="bad value 'x'"):
        parse_faults(["stop=x"])


def test_board_is_usable_again_after_a_reset(vboard_factory, tiny_model) -> None:
    from hil_runner.errors import ProtocolTimeout

    board = vboard_factory(model=tiny_model, faults=["reset=1"])
    quick = Timeouts(sync_byte=0.3, settle=0.05)
    with open_transport(board.descriptor) as link:
        client = ValidationClient(link, quick)
        client.connect()
        [model] = client.models()
        [x] = _inputs(model.inputs[0], 1)
        with pytest.raises(ProtocolTimeout, match="sync byte 0xAA"):
            client.run(model, [x])
    with open_transport(board.descriptor) as link:  # a new session after the reset
        client = ValidationClient(link, Timeouts(settle=0.8))  # the board is silent for reset_pause (0.5 s)
        client.connect()
        [model] = client.models()
        assert client.run(model, [x]).outputs[0].shape == (1, 10)
