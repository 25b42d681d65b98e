"""Benchmark: how long `aed --help` and every `aed <command> --help` take, and what they print on stderr.

    python bench/cli_help.py [--repeats 5] [--warmup 1] [--aed PATH] [--json F]

Each command runs as its own process (`python -m pipelines.cli`, or the given console script) with this clone
first on the import path; the commands run interleaved after a warm-up round (bench/harness.py), and the table
gives min / median / max per command, the ratio of medians to `aed --help`, the load and the verdict, then the
stderr lines each wrote (TensorFlow's start-up lines were the symptom). No asserts: figures only
(tests/test_cli_lazy.py checks the imports).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from harness import Case, add_arguments, compare, options, run_script

REPO = Path(__file__).resolve().parents[1]
COMMANDS = [
    [],
    *[[step] for step in ("ingest", "validate", "patch", "train", "quantize", "evaluate", "convert")],
    *[[step] for step in ("estimate", "export-firmware", "gate", "promote", "hil")],
    ["hil", "run"],
    ["hil", "vboard"],
    ["pipeline"],
    ["pipeline", "compile"],
]


def run_help(command: list[str], launcher: list[str]) -> int:
    """Run `aed <command> --help` once; the stderr lines it wrote."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # measure what a user sees, not a quietened run
    done = subprocess.run(
        [*launcher, *command, "--help"], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise SystemExit(
            f"aed {' '.join(command)} --help: exit {done.returncode}: {done.stderr.strip()[-300:]}"
        )
    return len(done.stderr.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aed", help="console script to time (default: python -m pipelines.cli)")
    add_arguments(parser)
    args = parser.parse_args()
    run_options = options(args)
    launcher = [args.aed] if args.aed else [sys.executable, "-m", "pipelines.cli"]
    cases = [
        Case("aed " + " ".join(command), lambda command=command: run_help(command, launcher))
        for command in COMMANDS
    ]
    result = compare(cases, **run_options)
    print(result.report())
    print(f"\n{'command':<28} {'stderr lines':>13}")
    for case in cases:
        print(f"{case.name:<28} {result.outputs[case.name]:>13}")
    result.write_json(args.json, {"stderr_lines": result.outputs})


if __name__ == "__main__":
    run_script(main)
