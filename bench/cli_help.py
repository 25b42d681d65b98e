"""Benchmark: how long `aed --help` and every `aed <command> --help` take, and what they print on stderr.

    python bench/cli_help.py [--repeat 3] [--aed PATH]

Each command runs as its own process (`python -m pipelines.cli`, or the given console script) with this clone
first on the import path; prints the median wall time per command and the stderr lines it wrote (TensorFlow's
start-up lines were the symptom). No asserts: figures only (tests/test_cli_lazy.py checks the imports).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

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


def time_help(command: list[str], launcher: list[str], repeat: int) -> tuple[float, int]:
    """(median seconds, stderr lines of the last run) of `aed <command> --help`."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # measure what a user sees, not a quietened run
    seconds, stderr = [], ""
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(
            [*launcher, *command, "--help"], capture_output=True, text=True, env=env, check=False
        )
        seconds.append(time.perf_counter() - started)
        stderr = done.stderr
        if done.returncode != 0:
            raise SystemExit(
                f"aed {' '.join(command)} --help: exit {done.returncode}: {stderr.strip()[-300:]}"
            )
    return statistics.median(seconds), len(stderr.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--aed", help="console script to time (default: python -m pipelines.cli)")
    args = parser.parse_args()
    launcher = [args.aed] if args.aed else [sys.executable, "-m", "pipelines.cli"]
    print(f"{'command':<28} {'median s':>9} {'stderr lines':>13}")
    for command in COMMANDS:
        median, lines = time_help(command, launcher, args.repeat)
        print(f"{'aed ' + ' '.join(command):<28} {median:>9.2f} {lines:>13}")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
