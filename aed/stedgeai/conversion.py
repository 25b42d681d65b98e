"""One conversion of an int8 model for a board: its settings, a `stedgeai` run, and the record of what it gave.

The record's figures come from `stedgeai` when it ran (`source: stedgeai`), else from the footprint estimator
(`source: estimator`); the estimator's full output is always included, labelled, so the two can be compared.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aed.params import bounded
from aed.records import sha256_file
from aed.stedgeai.command import CodeGenSettings, StedgeaiOptions, Target, build_argv
from aed.stedgeai.errors import StedgeaiNotFound, StedgeaiReportError
from aed.stedgeai.locate import find_stedgeai
from aed.stedgeai.reports import parse_c_info, parse_text_report
from aed.stedgeai.runner import run_stedgeai, tool_version


@dataclass(frozen=True)
class ConvertParams(CodeGenSettings):
    """The `convert` section of params.yaml: the code generation settings plus which board each model is
    converted for and how the tool is found and run."""

    targets: dict[str, Target] = field(  # the board each model is converted for
        default_factory=lambda: {"yamnet_256": "stm32u5", "yamnet_1024": "stm32n6"}
    )
    use_stedgeai: Literal["auto", "never", "require"] = "auto"
    stedgeai: str | None = None  # path to the executable; else $STEDGEAI_CORE_DIR, then PATH
    command: Literal["analyze", "generate"] = "generate"
    st_neural_art: str = "default"  # N6 profile, e.g. n6-noextmem@user_neuralart.json
    timeout_s: float = bounded(1800.0, 1.0)
    runtime_constants: Literal["2.0.0", "3.0.0"] = (
        "2.0.0"  # ST's published runtime overheads for the estimator
    )
    # ST Edge AI Core version whose published figures calibrate the estimator's latency and N6 blob models
    estimator_calibration: Literal["2.0.0", "3.0.0"] = "3.0.0"
    # stedgeai: ST's runtime (stedgeai or the estimator); tflm: TFLite Micro with the offline-planned arena
    # (.tflite models; ONNX QDQ gets the estimate only); both: the two
    runtime: Literal["stedgeai", "tflm", "both"] = "stedgeai"
    tflm_proof_patches: int = bounded(0, 0)  # patches the TFLM proof runs on; 0: every patch of the store
    tflm_jobs: int = bounded(0, 0)  # worker processes for the TFLM proof; 0: every core

    def target_for(self, model_name: str) -> str:
        target = self.targets.get(model_name)
        if target is None:
            known = ", ".join(sorted(self.targets)) or "none"
            raise ValueError(f"convert.targets: no target for model '{model_name}'; models with one: {known}")
        return target

    def options(self, target: str) -> StedgeaiOptions:
        """The tool's options for `target`: the Neural-ART profile applies to the N6 only."""
        return StedgeaiOptions(
            target=target,
            name=self.name,
            compression=self.compression,
            optimization=self.optimization,
            c_api=self.c_api,
            st_neural_art=self.st_neural_art if target == "stm32n6" else None,
        )


def locate_tool(params: ConvertParams) -> Path | None:
    """The stedgeai to run, or None to use the estimator alone."""
    if params.use_stedgeai == "never":
        return None
    tool = find_stedgeai(Path(params.stedgeai) if params.stedgeai else None)
    if tool is None and params.use_stedgeai == "require":
        raise StedgeaiNotFound(
            "convert.use_stedgeai is 'require' but no stedgeai was found "
            "(convert.stedgeai, $STEDGEAI_CORE_DIR or PATH)"
        )
    return tool


@dataclass(frozen=True)
class StedgeaiFigures:
    """What one stedgeai run measured, from its c_info report (and its text report for what c_info lacks)."""

    tool_version: str | None
    tool_version_cli: str
    argv: list[str]  # without the executable
    duration_s: float
    json_schema_version: Any
    weights_bytes: int
    activations_bytes: int
    rom_bytes: int
    rom_formula: str
    ram_bytes: int
    ram_formula: str
    macc: int | None
    null_fields: list[str]
    internal_ram_bytes: int
    external_ram_bytes: int
    text_report: dict[str, Any]
    generated_files: list[dict[str, str]]  # {name, sha256} per file the tool wrote

    source = "stedgeai"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}


@dataclass(frozen=True)
class EstimatorFigures:
    """The estimator's figures in the record's terms, when stedgeai did not run."""

    weights_bytes: int
    activations_bytes: int
    activations_tflm_bytes: int
    macc: int

    source = "estimator"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "tool_version": None,
            "weights_bytes": self.weights_bytes,
            "activations_bytes": self.activations_bytes,
            "activations_tflm_bytes": self.activations_tflm_bytes,
            "macc": self.macc,
            "generated_files": [],
        }


@dataclass(frozen=True)
class ConversionRecord:
    """The convert step's record: the figures of whichever source ran, the target and the estimator's view."""

    figures: StedgeaiFigures | EstimatorFigures
    target: str
    model_sha256: str
    latency_ms: float  # the estimator's: stedgeai does not measure latency without a board
    fits: bool
    estimator: dict[str, Any]  # the estimator's whole output (per-layer table included)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.figures.to_dict(),
            "target": self.target,
            "model_sha256": self.model_sha256,
            "latency_ms": self.latency_ms,
            "latency_source": "estimator",
            "fits": self.fits,
            "estimator": self.estimator,
        }


def estimator_figures(estimated: dict[str, Any]) -> EstimatorFigures:
    """The record's figures from `aed.footprint.estimate`'s output."""
    return EstimatorFigures(
        weights_bytes=estimated["weights_bytes"],
        activations_bytes=estimated["activations"]["improved_bytes"],
        activations_tflm_bytes=estimated["activations"]["arena_tflm_bytes"],
        macc=estimated["macs_total"],
    )


def conversion_record(
    figures: StedgeaiFigures | EstimatorFigures, target: str, estimated: dict[str, Any]
) -> ConversionRecord:
    return ConversionRecord(
        figures=figures,
        target=target,
        model_sha256=estimated["model_sha256"],
        latency_ms=round(estimated["latency"]["ms"], 4),
        fits=estimated["budget"]["fits"],
        estimator=estimated,
    )


def stedgeai_figures(
    c_info: dict[str, Any],
    text: dict[str, Any],
    version_cli: str,
    argv: list[str],
    duration_s: float,
    generated_files: list[dict[str, str]],
) -> StedgeaiFigures:
    """The record's figures from parsed reports (`parse_c_info`, `parse_text_report`) and the run's facts."""
    return StedgeaiFigures(
        tool_version=c_info.get("tool_version") or version_cli,
        tool_version_cli=version_cli,
        argv=argv[1:],
        duration_s=round(duration_s, 3),
        json_schema_version=c_info["json_schema_version"],
        weights_bytes=c_info["weights_bytes"],
        activations_bytes=c_info["activations_bytes"],
        rom_bytes=c_info["rom_bytes"],
        rom_formula=c_info["rom_formula"],
        ram_bytes=c_info["ram_bytes"],
        ram_formula=c_info["ram_formula"],
        # the N6's c_info has macc 0 on every node (parse_c_info says None): the text report has it
        macc=c_info["macc"] if c_info["macc"] is not None else text.get("macc"),
        null_fields=c_info["null_fields"],
        internal_ram_bytes=c_info["internal_ram_bytes"],
        external_ram_bytes=c_info["external_ram_bytes"],
        text_report={k: v for k, v in text.items() if k != "source"},
        generated_files=generated_files,
    )


def convert_with_stedgeai(
    params: ConvertParams, tool: Path, model: Path, target: str, out_dir: Path
) -> StedgeaiFigures:
    """Run stedgeai on `model` with its output, workspace and log in `out_dir`, and read its reports."""
    version = tool_version(tool)
    output, workspace = out_dir / "stedgeai", out_dir / "st_ai_ws"
    argv = build_argv(tool, params.command, model, params.options(target), output, workspace)
    env = dict(os.environ, STATS_TYPE=os.environ.get("STATS_TYPE", "aed_mlops"))
    result = run_stedgeai(argv, out_dir / "stedgeai.log", params.timeout_s, env)
    c_info_path = output / f"{params.name}_c_info.json"
    if not c_info_path.is_file():
        raise StedgeaiReportError(
            f"{c_info_path}: stedgeai exited 0 but wrote no c_info report (log: {result.log_path})"
        )
    c_info = parse_c_info(c_info_path)
    report_path = output / f"{params.name}_{params.command}_report.txt"
    text = parse_text_report(report_path) if report_path.is_file() else {}
    return stedgeai_figures(c_info, text, version, argv, result.duration_s, generated_files(output))


def generated_files(output: Path) -> list[dict[str, str]]:
    return [
        {"name": str(path.relative_to(output)), "sha256": sha256_file(path)}
        for path in sorted(output.rglob("*"))
        if path.is_file()
    ]
