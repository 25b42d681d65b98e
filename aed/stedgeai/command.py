"""Command lines for `stedgeai analyze | generate | validate` on STM32U5 and STM32N6."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

COMMANDS = ("analyze", "generate", "validate")
Target = Literal["stm32u5", "stm32n6"]  # the boards this project converts for
TARGETS: tuple[str, ...] = get_args(Target)
Compression = Literal["none", "lossless", "low", "medium", "high"]
Optimization = Literal["balanced", "time", "ram"]
_COMPRESSION: tuple[str, ...] = get_args(Compression)
_OPTIMIZATION: tuple[str, ...] = get_args(Optimization)
_C_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class CodeGenSettings:
    """How stedgeai writes a network's C code, the same for every model: declared here once, read by the
    `convert` section of params.yaml (ConvertParams) and by each run's options (StedgeaiOptions)."""

    name: str = "network"  # C name of the generated network (and the prefix of its files)
    compression: Compression = "lossless"  # MCU targets only
    optimization: Optimization = "balanced"  # MCU targets only
    c_api: Literal["st-ai", "legacy"] = "st-ai"

    def __post_init__(self) -> None:
        if not _C_NAME.fullmatch(self.name):
            raise ValueError(f"name: {self.name!r} is not a C identifier (letters, digits, '_')")


@dataclass(frozen=True)
class StedgeaiOptions(CodeGenSettings):
    """One run's options: the code generation settings plus the target and what only a run sets."""

    target: str = "stm32u5"
    # N6 only: "default", "n6-noextmem@user_neuralart.json", ... ("" = bare --st-neural-art flag)
    st_neural_art: str | None = None
    input_data_type: str | None = None
    output_data_type: str | None = None
    inputs_ch_position: str | None = None
    outputs_ch_position: str | None = None
    mode: str = "host"  # validate: host | target
    desc: str | None = None  # validate --mode target: serial:/dev/ttyACM0:921600
    valinput: Path | None = None
    valoutput: Path | None = None
    batch_size: int | None = None
    verbosity: int = 1


def _check(options: StedgeaiOptions, command: str) -> None:
    if command not in COMMANDS:
        raise ValueError(f"unknown stedgeai command '{command}'; expected one of {list(COMMANDS)}")
    if options.target not in TARGETS:
        raise ValueError(f"unsupported stedgeai target '{options.target}'; expected one of {list(TARGETS)}")
    if options.compression not in _COMPRESSION:
        raise ValueError(f"stedgeai compression '{options.compression}' not in {list(_COMPRESSION)}")
    if options.optimization not in _OPTIMIZATION:
        raise ValueError(f"stedgeai optimization '{options.optimization}' not in {list(_OPTIMIZATION)}")
    if options.st_neural_art is not None and options.target != "stm32n6":
        raise ValueError("--st-neural-art applies to target stm32n6 only")
    if command == "validate":
        if options.mode not in ("host", "target"):
            raise ValueError(f"validate mode must be host or target, got '{options.mode}'")
        if options.mode == "target":
            if not options.desc:
                raise ValueError(
                    "validate --mode target needs a device descriptor such as serial:/dev/ttyACM0:921600"
                )
            if ":" not in options.desc:
                # a bare port fails inside the tool with 'invalid/unsupported "lib:COM3" descriptor'
                raise ValueError(
                    f"validate descriptor '{options.desc}' needs a domain, e.g. serial:{options.desc}"
                )


def build_argv(
    tool: Path, command: str, model: Path, options: StedgeaiOptions, output_dir: Path, workspace: Path
) -> list[str]:
    """The full argument vector (no shell), in a stable order so it can be snapshot-tested."""
    _check(options, command)
    argv = [str(tool), command, "--model", str(model), "--target", options.target, "--name", options.name]
    if options.target == "stm32n6":
        argv += ["--st-neural-art"] + ([options.st_neural_art] if options.st_neural_art else [])
    else:
        argv += ["--compression", options.compression, "--optimization", options.optimization]
    argv += ["--c-api", options.c_api]
    for flag, value in (
        ("--input-data-type", options.input_data_type),
        ("--output-data-type", options.output_data_type),
        ("--inputs-ch-position", options.inputs_ch_position),
        ("--outputs-ch-position", options.outputs_ch_position),
    ):
        if value:
            argv += [flag, value]
    if command == "validate":
        argv += ["--mode", options.mode]
        if options.mode == "target":
            argv += ["--desc", str(options.desc)]
        if options.valinput is not None:
            argv += ["--valinput", str(options.valinput)]
        if options.valoutput is not None:
            argv += ["--valoutput", str(options.valoutput)]
        if options.batch_size is not None:
            argv += ["--batch-size", str(options.batch_size)]
    argv += [
        "--output",
        str(output_dir),
        "--workspace",
        str(workspace),
        "--verbosity",
        str(options.verbosity),
    ]
    return argv
