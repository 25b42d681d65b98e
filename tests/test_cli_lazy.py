"""`aed --help` and every `aed <command> --help` load no heavy library: building the parsers imports no
TensorFlow, Keras, ONNX, librosa, Great Expectations, kfp, labgrid, pandas..., and prints nothing on stderr.

The check is on `sys.modules` in a fresh interpreter (this test process may have imported them already), not a
timed assert; bench/cli_help.py gives the times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Seconds to import each on a small machine; none of them is needed to print a usage.
HEAVY = (
    "tensorflow", "keras", "tf_keras", "onnx", "onnxruntime", "librosa", "great_expectations", "kfp",
    "labgrid", "pandas", "scipy", "sklearn", "matplotlib", "h5py", "numba", "boto3", "botocore", "dvc",
)  # fmt: skip
COMMANDS = [
    [], ["ingest"], ["validate"], ["patch"], ["train"], ["quantize"], ["evaluate"], ["convert"], ["estimate"],
    ["export-firmware"], ["gate"], ["promote"], ["detect"], ["hil"], ["hil", "run"], ["hil", "vboard"], ["pipeline"],
    ["pipeline", "compile"], ["pipeline", "run-local"], ["pipeline", "submit"], ["pipeline", "schedule"],
]  # fmt: skip

# Runs every `--help` through the console script's main in one fresh interpreter, then reports what got imported.
PROBE = """
import contextlib, io, json, sys
from pipelines.cli import main
codes = {}
for command in json.loads(sys.argv[1]):
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            main([*command, "--help"])
    except SystemExit as done:
        codes[" ".join(command)] = [done.code, out.getvalue()]
top = {name.split(".")[0] for name in sys.modules}
print(json.dumps({"codes": codes, "heavy": sorted(top & set(json.loads(sys.argv[2])))}))
"""


def _environment() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # what a user sees: TensorFlow would print its start-up lines
    return env


def test_no_help_imports_a_heavy_library() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(COMMANDS), json.dumps(HEAVY)],
        capture_output=True, text=True, env=_environment(), cwd=REPO, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["heavy"] == [], f"building the parsers imported {result['heavy']}"
    for command, (code, usage) in result["codes"].items():
        assert code == 0 and usage.startswith("usage: aed"), (command, code, usage[:200])
    assert done.stderr == ""


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"]], ids=["aed", "train", "evaluate"])
def test_help_as_the_user_runs_it_prints_only_the_usage(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *command, "--help"],
        capture_output=True, text=True, env=_environment(), cwd=REPO, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0
    assert done.stdout.startswith("usage: aed")
    assert done.stderr == "", done.stderr  # no TensorFlow / absl lines


def test_a_step_still_finds_its_params_classes_imported_on_first_use() -> None:
    """ingest, validate, evaluate and hil import their params classes on first use (PEP 562): the KFP tasks
    and the pipeline, which read them from `run`'s annotations, still see them."""
    from components import evaluate, hil, ingest, validate
    from components.taskio import params_sections

    assert params_sections(validate)["params"][1].__name__ == "ValidateParams"
    assert params_sections(ingest)["params"][1].__name__ == "IngestParams"
    assert params_sections(hil)["params"][1].__name__ == "HilParams"
    assert params_sections(evaluate)["params"][1].__name__ == "EvaluateParams"
    with pytest.raises(AttributeError):
        _ = validate.NoSuchName
