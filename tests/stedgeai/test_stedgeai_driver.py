"""Command lines (snapshots), locating the tool, running it with a timeout, and clear failures."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from aed.stedgeai import (
    StedgeaiError,
    StedgeaiNotFound,
    StedgeaiOptions,
    build_argv,
    find_stedgeai,
    run_stedgeai,
    tool_version,
)

TOOL, MODEL, OUT, WS = Path("/opt/st/stedgeai"), Path("m.tflite"), Path("out"), Path("ws")


def test_argv_u5_generate_snapshot() -> None:
    argv = build_argv(TOOL, "generate", MODEL, StedgeaiOptions(target="stm32u5"), OUT, WS)
    assert argv == [
        "/opt/st/stedgeai", "generate", "--model", "m.tflite", "--target", "stm32u5", "--name", "network",
        "--compression", "lossless", "--optimization", "balanced", "--c-api", "st-ai",
        "--output", "out", "--workspace", "ws", "--verbosity", "1",
    ]  # fmt: skip


def test_argv_u5_analyze_snapshot() -> None:
    options = StedgeaiOptions(target="stm32u5", optimization="ram", compression="none", verbosity=0)
    argv = build_argv(TOOL, "analyze", MODEL, options, OUT, WS)
    assert argv[1:] == [
        "analyze", "--model", "m.tflite", "--target", "stm32u5", "--name", "network",
        "--compression", "none", "--optimization", "ram", "--c-api", "st-ai",
        "--output", "out", "--workspace", "ws", "--verbosity", "0",
    ]  # fmt: skip


def test_argv_n6_generate_snapshot() -> None:
    options = StedgeaiOptions(
        target="stm32n6", st_neural_art="profile_O3@user_neuralart.json", input_data_type="int8",
        output_data_type="float32", inputs_ch_position="chfirst", outputs_ch_position="chfirst",
    )  # fmt: skip
    argv = build_argv(TOOL, "generate", Path("m.onnx"), options, OUT, WS)
    assert argv[1:] == [
        "generate", "--model", "m.onnx", "--target", "stm32n6", "--name", "network",
        "--st-neural-art", "profile_O3@user_neuralart.json", "--c-api", "st-ai",
        "--input-data-type", "int8", "--output-data-type", "float32",
        "--inputs-ch-position", "chfirst", "--outputs-ch-position", "chfirst",
        "--output", "out", "--workspace", "ws", "--verbosity", "1",
    ]  # fmt: skip
    bare = build_argv(
        TOOL, "generate", Path("m.onnx"), StedgeaiOptions(target="stm32n6", st_neural_art=""), OUT, WS
    )
    assert bare[bare.index("--st-neural-art") + 1] == "--c-api"  # bare flag = default profile


def test_argv_validate_host_and_target_snapshots() -> None:
    host = StedgeaiOptions(target="stm32u5", valinput=Path("x.npy"), valoutput=Path("y.npy"))
    argv = build_argv(TOOL, "validate", MODEL, host, OUT, WS)
    assert argv[argv.index("--mode") :] == [
        "--mode", "host", "--valinput", "x.npy", "--valoutput", "y.npy",
        "--output", "out", "--workspace", "ws", "--verbosity", "1",
    ]  # fmt: skip
    target = StedgeaiOptions(target="stm32n6", st_neural_art="n6-noextmem@user_neuralart.json", mode="target",
                             desc="serial:921600", batch_size=1)  # fmt: skip
    argv = build_argv(TOOL, "validate", MODEL, target, OUT, WS)
    assert argv[argv.index("--mode") :] == [
        "--mode", "target", "--desc", "serial:921600", "--batch-size", "1",
        "--output", "out", "--workspace", "ws", "--verbosity", "1",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "options", "message"),
    [
        ("convert", StedgeaiOptions(), "unknown stedgeai command"),
        ("generate", StedgeaiOptions(target="stm32h7"), "unsupported stedgeai target"),
        ("generate", StedgeaiOptions(target="stm32u5", st_neural_art="default"), "stm32n6 only"),
        ("validate", StedgeaiOptions(mode="target"), "needs a device descriptor"),
        ("validate", StedgeaiOptions(mode="target", desc="COM3"), "needs a domain, e.g. serial:COM3"),
        ("generate", StedgeaiOptions(compression="max"), "compression"),
    ],
)
def test_argv_rejects_bad_options(command: str, options: StedgeaiOptions, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_argv(TOOL, command, MODEL, options, OUT, WS)


def _exe(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\necho ST Edge AI Core v2.0.0-A1\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_find_order(tmp_path: Path) -> None:
    explicit = _exe(tmp_path / "explicit" / "stedgeai")
    core = _exe(tmp_path / "core" / "Utilities" / "linux" / "stedgeai")
    on_path = _exe(tmp_path / "bin" / "stedgeai")
    env = {"STEDGEAI_CORE_DIR": str(tmp_path / "core"), "PATH": str(tmp_path / "bin")}
    assert find_stedgeai(explicit, env) == explicit
    assert find_stedgeai(None, env) == core
    assert find_stedgeai(None, {"PATH": str(tmp_path / "bin")}) == on_path
    assert find_stedgeai(None, {"PATH": str(tmp_path / "nothing")}) is None
    with pytest.raises(StedgeaiNotFound, match="not an executable"):
        find_stedgeai(tmp_path / "missing" / "stedgeai", env)


def test_version_and_run(fake_stedgeai: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert tool_version(fake_stedgeai) == "3.0.0-20426 123672867"
    monkeypatch.setenv("FAKE_STEDGEAI_MODE", "noversion")
    with pytest.raises(StedgeaiError, match="gave no ST Edge AI Core version"):
        tool_version(fake_stedgeai)


def test_failure_shows_log_tail(fake_stedgeai: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_STEDGEAI_MODE", "fail")
    with pytest.raises(StedgeaiError, match="exited with code 3") as caught:
        run_stedgeai([str(fake_stedgeai), "generate"], tmp_path / "tool.log", timeout_s=30)
    message = str(caught.value)
    assert "unsupported layer type: Erf" in message and "log line 39" in message
    assert "log line 0\n" not in message  # only the tail
    assert "log line 0" in (tmp_path / "tool.log").read_text()  # the whole log is kept


def test_timeout_is_reported(fake_stedgeai: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_STEDGEAI_MODE", "hang")
    with pytest.raises(StedgeaiError, match=r"timed out after 1\.\d+ s \(limit 1.5 s\)"):
        run_stedgeai([str(fake_stedgeai), "generate"], tmp_path / "tool.log", timeout_s=1.5)


@pytest.mark.parametrize(
    ("text", "version"),
    [
        (
            "ST Edge AI Core v2.0.0-A1 / ISPU 1.1.0 / MLC 1.1.0 / StellarStudioAI 2.0.0 / STM32CubeAI 10.0.0",
            "2.0.0-A1",
        ),
        ("ST Edge AI Core v3.0.0-20426 123672867", "3.0.0-20426 123672867"),
        ("\n  st edge ai core v2.2.0-20266 2adc00962 (beta)\n", "2.2.0-20266 2adc00962"),
        ("STM32Cube.AI v9.0.0", None),
        ("garbage \x00\x01", None),
    ],
)
def test_parse_version_is_lenient(text: str, version: str | None) -> None:
    from aed.stedgeai.runner import parse_version

    assert parse_version(text) == version
