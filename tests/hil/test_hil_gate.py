"""The gate: same-key comparisons only, fail closed (missing metric, key mismatch, disallowed source, no baseline),
readable table, verdict JSON, exit codes 0/1/2, explicit --accept."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from components.gate import GateParams, baseline_path
from components.gate import run as gate_run
from hil_runner.boards.inventory import Board
from hil_runner.boards.profiles import get_profile
from hil_runner.farm.local import LocalFarm
from hil_runner.gate import GateThresholds, accept, evaluate
from hil_runner.job import JobConfig, load_eval_set, run_job
from hil_runner.protocol.host import Timeouts
from hil_runner.vboard.server import VirtualBoard


@pytest.fixture(scope="module")
def record(tiny_model, patch_store, tmp_path_factory) -> dict:
    """One real record from a virtual-board run of the tiny model."""
    tmp = tmp_path_factory.mktemp("gate")
    with VirtualBoard(get_profile("b-u585i-iot02a"), model_path=tiny_model) as vb:
        vb.serve_pty()
        board = Board(name="vb0", profile=get_profile("b-u585i-iot02a"), port=vb.descriptor, virtual=True)
        config = JobConfig(profile="b-u585i-iot02a", latency_repeats=3, progress=False,
                           exchange_timeouts=Timeouts(settle=0.05))  # fmt: skip
        return run_job(tiny_model, load_eval_set(patch_store, "test"), LocalFarm([board], tmp / "locks"), config,
                       tmp / "record.json")  # fmt: skip


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def _verdict(tmp_path: Path, candidate: dict, baseline: dict | None, **thresholds):
    base = _write(tmp_path / "baseline.json", baseline) if baseline is not None else tmp_path / "missing.json"
    return evaluate(_write(tmp_path / "record.json", candidate), base, GateThresholds(**thresholds))


def test_same_record_passes(record, tmp_path) -> None:
    verdict = _verdict(tmp_path, record, record)
    assert verdict.verdict == "pass" and verdict.exit_code == 0
    names = {check.name for check in verdict.checks}
    assert {
        "clip accuracy",
        "latency median ms",
        "RAM bytes",
        "flash bytes",
        "flash budget (weights + code)",
    } <= names


@pytest.mark.parametrize(
    ("metric", "value", "check"),
    [
        ("latency_median_ms", lambda v: v * 1.05, "latency median ms"),
        ("clip_accuracy", lambda v: v - 0.05, "clip accuracy"),
        ("activations_bytes", lambda v: v + 16, "RAM bytes"),
        ("weights_bytes", lambda v: v + 1, "flash bytes"),
        ("top1_agreement", lambda v: 0.9, "top-1 agreement"),
        ("cosine_min", lambda v: 0.99, "cosine (min)"),
        ("l2r_max", lambda v: 0.5, "l2r (max)"),
    ],
)
def test_each_regression_fails_with_exit_1(record, tmp_path, metric, value, check) -> None:
    candidate = copy.deepcopy(record)
    candidate["metrics"][metric] = value(candidate["metrics"][metric])
    verdict = _verdict(tmp_path, candidate, record)
    assert verdict.exit_code == 1
    assert [c.name for c in verdict.checks if c.status == "fail"] == [check]


def test_latency_within_threshold_passes(record, tmp_path) -> None:
    candidate = copy.deepcopy(record)
    candidate["metrics"]["latency_median_ms"] *= 1.02
    assert _verdict(tmp_path, candidate, record).exit_code == 0


def test_over_budget_model_fails(record, tmp_path) -> None:
    candidate = copy.deepcopy(record)
    candidate["metrics"]["weights_bytes"] = 3_238_568  # YAMNet-1024 does not fit the U5's 2 MB flash
    verdict = _verdict(tmp_path, candidate, candidate)
    assert verdict.exit_code == 1
    assert [c.name for c in verdict.checks if c.status == "fail"] == ["flash budget (weights + code)"]


def test_fails_closed(record, tmp_path) -> None:
    missing = copy.deepcopy(record)
    del missing["metrics"]["latency_median_ms"]
    verdict = _verdict(tmp_path, missing, record)
    assert verdict.exit_code == 2 and any("latency_median_ms missing" in c.detail for c in verdict.checks)

    other_tool = copy.deepcopy(record)
    other_tool["key"]["tool_version"] = "3.0.0"
    verdict = _verdict(tmp_path, other_tool, record)
    assert verdict.exit_code == 2
    assert [c.name for c in verdict.checks if c.status == "undecidable"] == ["key tool_version"]
    assert not any(c.name == "latency median ms" for c in verdict.checks)  # never compared across keys

    verdict = _verdict(tmp_path, record, record, allow_virtual=False)
    assert verdict.exit_code == 2 and "not board evidence" in verdict.checks[0].detail

    assert _verdict(tmp_path, record, None).exit_code == 2
    assert evaluate(tmp_path / "nope.json", None, GateThresholds()).exit_code == 2
    not_hil = {**record, "kind": "evaluate"}
    assert _verdict(tmp_path, not_hil, record).exit_code == 2


def test_regression_and_undecidable_together_is_a_regression(record, tmp_path) -> None:
    candidate = copy.deepcopy(record)
    candidate["metrics"]["latency_median_ms"] *= 2
    del candidate["metrics"]["clip_accuracy"]
    assert _verdict(tmp_path, candidate, record).verdict == "regression"


def test_component_writes_verdict_and_table(record, tmp_path) -> None:
    hil_record = _write(tmp_path / "hil.json", record)
    params = GateParams(baseline=str(tmp_path / "baselines" / "hil-{model_name}-{profile}.json"))
    assert baseline_path(params, hil_record, "yamnet_256").name == "hil-yamnet_256-b-u585i-iot02a.json"
    result = gate_run(params, hil_record, tmp_path / "verdict.json", model_name="yamnet_256",
                      table_path=tmp_path / "table.md")  # fmt: skip
    assert result["exit_code"] == 2 and not result["passed"]  # no baseline yet: fail closed
    accept(hil_record, baseline_path(params, hil_record, "yamnet_256"))
    result = gate_run(params, hil_record, tmp_path / "verdict.json", model_name="yamnet_256",
                      table_path=tmp_path / "table.md")  # fmt: skip
    assert result["passed"] and result["verdict"] == "pass"
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert verdict["verdict"] == "pass" and verdict["baseline"]["sha256"] and verdict["checks"]
    assert verdict["promotable"] and verdict["reasons"] == []
    table = (tmp_path / "table.md").read_text()
    assert "latency median ms" in table and "verdict: PASS (exit 0)" in table


def test_accept_refuses_an_incomplete_record(record, tmp_path) -> None:
    broken = copy.deepcopy(record)
    del broken["metrics"]["weights_bytes"]
    with pytest.raises(ValueError, match=r"missing key or metrics \['weights_bytes'\]"):
        accept(_write(tmp_path / "r.json", broken), tmp_path / "b.json")
    assert not (tmp_path / "b.json").exists()


@pytest.mark.slow
def test_cli_hil_run_then_gate(tiny_model, patch_store, tmp_path) -> None:
    """`aed hil run` on spawned virtual boards, `aed gate --accept`, `aed gate` (exit 0); the other exit codes are
    covered above without the CLI's start-up cost."""
    params = tmp_path / "params.yaml"
    params.write_text(
        f"hil:\n  workdir: {tmp_path / 'work'}\n  lock_dir: {tmp_path / 'work' / 'locks'}\n  latency_repeats: 3\n"
        f"gate:\n  baseline: {tmp_path / 'baselines'}/hil-{{model_name}}-{{profile}}.json\n"
    )
    aed = [sys.executable, "-m", "components.cli"]
    out = tmp_path / "hil.json"

    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*aed, *args, "--params", str(params)], capture_output=True, text=True, timeout=300
        )

    done = call("hil", "run", "--model", str(tiny_model), "--patches", str(patch_store), "--out", str(out),
                "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "source=virtual" in done.stdout and "top1_agreement=1.0" in done.stdout
    verdict = tmp_path / "verdict.json"
    assert call("gate", "--record", str(out), "--accept").returncode == 0
    passed = call("gate", "--record", str(out), "--verdict", str(verdict))
    assert passed.returncode == 0 and "verdict: PASS" in passed.stdout, passed.stdout
    assert json.loads(verdict.read_text())["verdict"] == "pass"
