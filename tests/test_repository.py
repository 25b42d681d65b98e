"""The repository keeps its promises to a user on a fresh machine: two documented commands, CI running the
documented test command, every dependency pinned and locked, every step reachable from the CLI."""

import re
import tomllib
from pathlib import Path

from components.cli import build_parser, step_packages

REPO = Path(__file__).resolve().parents[1]


def test_readme_gives_the_two_setup_commands_that_the_makefile_defines():
    readme = (REPO / "README.md").read_text()
    block = (
        readme.split("## Set-up: two commands on a fresh machine", 1)[1]
        .split("```bash", 1)[1]
        .split("```", 1)[0]
    )
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["AED_DATA_MIRROR=../shared/data/esc10 make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_ci_runs_the_readme_test_command():
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert "make test" in lines


def test_every_dependency_is_pinned_and_in_the_lock():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["dev"]
    lock = (REPO / "requirements.lock").read_text().lower()
    for requirement in requirements:
        name, _, version = requirement.partition("==")
        assert version, f"{requirement}: not pinned with =="
        base = re.sub(r"\[.*\]", "", name).lower().replace("_", "-")
        assert f"\n{base}=={version}" in lock, f"{requirement}: not in requirements.lock"


def test_every_step_package_registers_a_subcommand_with_a_run_entry_point():
    import importlib

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for package in step_packages():
        module = importlib.import_module(f"components.{package}")
        assert callable(getattr(module, "register", None)), package
    for expected in ("ingest", "validate", "patch"):
        assert expected in commands
        assert callable(importlib.import_module(f"components.{expected}").run)


def test_make_demo_gates_every_model_that_params_yaml_names():
    import subprocess

    import yaml

    names = yaml.safe_load((REPO / "params.yaml").read_text())["models"]["names"]
    dry_run = subprocess.run(
        ["make", "-n", "demo"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    loops = re.findall(r"for model in ([\w ]+); do", dry_run)
    assert loops and all(loop.split() == names for loop in loops), loops


def test_readme_results_are_the_committed_pipeline_metrics():
    import json

    readme = (REPO / "README.md").read_text()
    section = readme.split("## Results on ESC-10", 1)[1].split("\n## ", 1)[0]
    rows = {
        cells[0]: cells[1:3]
        for cells in (
            [cell.strip(" *") for cell in line.strip("|").split("|")]
            for line in section.splitlines()
            if line.startswith("| YAMNet")
        )
    }
    metrics = json.loads((REPO / "docs" / "reference-run" / "metrics.json").read_text())
    expected = {
        "YAMNet-256 (int8 TFLite)": ("yamnet_256", "tflite"),
        "YAMNet-1024 (int8 ONNX QDQ)": ("yamnet_1024", "onnx_qdq"),
    }
    assert set(rows) == set(expected)
    for label, (model, int8_format) in expected.items():
        for shown, fmt in zip(rows[label], ("float32", int8_format), strict=True):
            mean = metrics[model][fmt]["clip_accuracy"]["mean"]
            assert shown == f"{100 * mean:.2f} %", (label, fmt, shown, mean)
