"""The gate: same-key comparisons only, fail closed (malformed record, key mismatch, disallowed source, no baseline),
readable table, verdict JSON, exit codes 0/1/2, explicit --accept. Records come from a real virtual-board run."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from aed.record_schema import RecordError
from components.gate import run as gate_run
from hil_runner.boards.inventory import Board
from hil_runner.boards.profiles import get_profile
from hil_runner.farm.local import LocalFarm
from hil_runner.gate import GateParams, accept, evaluate
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
    return evaluate(_write(tmp_path / "record.json", candidate), base, GateParams(**thresholds))


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


def _with(record: dict, metric: str, value: float) -> dict:
    """A copy with one metric changed where the job writes it (metrics, and its copy in the accuracy section)."""
    changed = copy.deepcopy(record)
    changed["metrics"][metric] = value
    if metric in changed["accuracy"]:
        changed["accuracy"][metric] = value
    return changed


@pytest.mark.parametrize(
    ("metric", "value", "check"),
    [
        ("latency_median_ms", lambda v: v * 1.05, "latency median ms"),
        ("clip_accuracy", lambda v: 0.45, "clip accuracy"),  # the baseline's is set to 0.5 below
        ("activations_bytes", lambda v: v + 16, "RAM bytes"),
        ("weights_bytes", lambda v: v + 1, "flash bytes"),
        ("top1_agreement", lambda v: 0.9, "top-1 agreement"),
        ("cosine_min", lambda v: 0.99, "cosine (min)"),
        ("l2r_max", lambda v: 0.5, "l2r (max)"),
    ],
)
def test_each_regression_fails_with_exit_1(record, tmp_path, metric, value, check) -> None:
    baseline = _with(record, "clip_accuracy", 0.5)
    candidate = _with(baseline, metric, value(baseline["metrics"][metric]))
    verdict = _verdict(tmp_path, candidate, baseline)
    assert verdict.exit_code == 1
    assert [c.name for c in verdict.checks if c.status == "fail"] == [check]


def test_latency_within_threshold_passes(record, tmp_path) -> None:
    candidate = _with(record, "latency_median_ms", record["metrics"]["latency_median_ms"] * 1.02)
    assert _verdict(tmp_path, candidate, record).exit_code == 0


def test_over_budget_model_fails(record, tmp_path) -> None:
    candidate = _with(record, "weights_bytes", 3_238_568)  # YAMNet-1024 does not fit the U5's 2 MB flash
    verdict = _verdict(tmp_path, candidate, candidate)
    assert verdict.exit_code == 1
    assert [c.name for c in verdict.checks if c.status == "fail"] == ["flash budget (weights + code)"]


def test_fails_closed(record, tmp_path) -> None:
    missing = copy.deepcopy(record)
    del missing["metrics"]["latency_median_ms"]
    with pytest.raises(RecordError, match=r"record.json: metrics.latency_median_ms: missing"):
        _verdict(tmp_path, missing, record)

    other_tool = copy.deepcopy(record)
    other_tool["key"]["tool_version"] = "3.0.0"
    verdict = _verdict(tmp_path, other_tool, record)
    assert verdict.exit_code == 2
    assert [c.name for c in verdict.checks if c.status == "undecidable"] == ["key tool_version"]
    assert [c.name for c in verdict.key_mismatches()] == ["key tool_version"]
    assert not any(c.name == "latency median ms" for c in verdict.checks)  # never compared across keys

    verdict = _verdict(tmp_path, record, record, allow_virtual=False)
    assert verdict.exit_code == 2 and "not board evidence" in verdict.checks[0].detail

    assert _verdict(tmp_path, record, None).exit_code == 2
    assert evaluate(tmp_path / "nope.json", None, GateParams()).exit_code == 2
    not_hil = {**record, "kind": "evaluate"}
    with pytest.raises(RecordError, match=r"kind: expected one of \['hil'\]"):
        _verdict(tmp_path, not_hil, record)


def test_regression_and_undecidable_together_is_a_regression(record, tmp_path) -> None:
    candidate = _with(record, "weights_bytes", 3_238_568)  # over the U5's flash budget, and no baseline yet
    verdict = _verdict(tmp_path, candidate, None)
    assert {c.status for c in verdict.checks} >= {"fail", "undecidable"} and verdict.verdict == "regression"


def test_component_writes_verdict_and_table(record, tmp_path) -> None:
    hil_record = _write(tmp_path / "hil.json", record)
    params = GateParams(baseline=str(tmp_path / "baselines" / "hil-{model_name}-{profile}.json"))
    assert params.baseline_path(hil_record, "yamnet_256").name == "hil-yamnet_256-b-u585i-iot02a.json"
    result = gate_run(params, hil_record, tmp_path / "verdict.json", model_name="yamnet_256",
                      table_path=tmp_path / "table.md")  # fmt: skip
    assert result["exit_code"] == 2 and not result["passed"]  # no baseline yet: fail closed
    accept(hil_record, params.baseline_path(hil_record, "yamnet_256"))
    result = gate_run(params, hil_record, tmp_path / "verdict.json", model_name="yamnet_256",
                      table_path=tmp_path / "table.md")  # fmt: skip
    assert result["passed"] and result["verdict"] == "pass"
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert verdict["verdict"] == "pass" and verdict["baseline"]["sha256"] and verdict["checks"]
    assert verdict["model"]["sha256"] == record["model_sha256"] and verdict["record"]["path"] == str(
        hil_record
    )
    assert verdict["promotable"] and verdict["reasons"] == []
    table = (tmp_path / "table.md").read_text()
    assert "latency median ms" in table and "verdict: PASS (exit 0)" in table


def test_accept_refuses_an_incomplete_record(record, tmp_path) -> None:
    broken = copy.deepcopy(record)
    del broken["metrics"]["weights_bytes"]
    with pytest.raises(RecordError, match=r"r.json: metrics.weights_bytes: missing"):
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
    aed = [sys.executable, "-m", "pipelines.cli"]
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


def _run(tiny_model, evalset, tmp: Path, name: str) -> dict:
    with VirtualBoard(get_profile("b-u585i-iot02a"), model_path=tiny_model) as vb:
        vb.serve_pty()
        board = Board(name="vb0", profile=get_profile("b-u585i-iot02a"), port=vb.descriptor, virtual=True)
        config = JobConfig(profile="b-u585i-iot02a", latency_repeats=2, progress=False,
                           exchange_timeouts=Timeouts(settle=0.05))  # fmt: skip
        return run_job(tiny_model, evalset, LocalFarm([board], tmp / "locks"), config, tmp / f"{name}.json")


def _store(root: Path, classes: list[str], clips: int, seed: int = 0) -> Path:
    import numpy as np

    from aed.patchstore import write_patch_store

    rng = np.random.default_rng(seed)
    items = [({"clip_id": f"c{n}", "label": classes[n % len(classes)], "fold": 1, "split": "test"},
              rng.normal(size=(3, 64, 96, 1)).astype(np.float32)) for n in range(clips)]  # fmt: skip
    write_patch_store(root, items, classes)
    return root


def test_real_runs_of_other_datasets_subsets_and_front_ends_are_never_compared(
    tiny_model, patch_store, tmp_path
) -> None:
    """The measured cases: a 3-class user dataset against the 10-class baseline, a 40-patch run against the full
    evaluation set, patches made by another front end. Same model, same board: only the key tells them apart."""
    from aed.features import FeatureConfig

    baseline = _run(tiny_model, load_eval_set(patch_store, "test"), tmp_path, "baseline")
    three = _store(tmp_path / "three", ["dog", "rain", "sea_waves"], 6)
    cases = {
        "three classes": (load_eval_set(three, "test"),
                          {"class_names", "eval_set_sha256", "dataset_sha256"}),
        "subset": (load_eval_set(patch_store, "test", max_patches=6), {"eval_set_sha256", "eval_patches"}),
        "front end": (load_eval_set(patch_store, "test", frontend=FeatureConfig(fmax=7000.0)),
                      {"frontend_sha256"}),
    }  # fmt: skip
    for name, (evalset, fields) in cases.items():
        candidate = _run(tiny_model, evalset, tmp_path, name.replace(" ", "_"))
        verdict = _verdict(tmp_path, candidate, baseline)
        assert verdict.exit_code == 2, name
        assert {c.name[len("key ") :] for c in verdict.key_mismatches()} == fields, name
    again = _run(tiny_model, load_eval_set(patch_store, "test"), tmp_path, "again")
    assert again["key"] == baseline["key"] | {"board": again["key"]["board"]}
    assert _verdict(tmp_path, again, baseline).exit_code == 0


def test_the_patch_store_fingerprint_ignores_other_files_in_its_folder(patch_store, tmp_path) -> None:
    import shutil

    from aed.fingerprints import dataset_sha256

    copy_ = shutil.copytree(patch_store, tmp_path / "copy")
    assert dataset_sha256(copy_) == dataset_sha256(patch_store)
    (copy_ / "manifest.json").write_text("{}")  # written by `aed patch`: describes the store, is not its data
    assert dataset_sha256(copy_) == dataset_sha256(patch_store)
    shard = copy_ / "shard-00000.npy"
    shard.write_bytes(shard.read_bytes()[:-4] + b"\x00\x00\x80\x3f")
    assert dataset_sha256(copy_) != dataset_sha256(patch_store)


@pytest.mark.parametrize(
    ("poison", "count"),
    [("nan", "18 of 18"), ("inf", "18 of 18"), ("one nan", "1 of 18"), ("one -inf", "1 of 18")],
)
def test_hil_job_refuses_non_finite_patches(tiny_model, patch_store, tmp_path, poison, count) -> None:
    """The measured case: an all-NaN patch store gave top-1 agreement 1.0. Refused before any board is leased."""
    import numpy as np

    from hil_runner.job import NonFiniteError

    evalset = load_eval_set(patch_store, "test")
    value = -np.inf if "-inf" in poison else np.inf if "inf" in poison else np.nan
    if poison.startswith("one"):
        evalset.patches[4, 10, 20, 0] = value
    else:
        evalset.patches[:] = value

    class NoFarm:
        def lease(self, profile, exclude=frozenset()):
            raise AssertionError("a board was leased for non-finite inputs")

    out = tmp_path / "record.json"
    with pytest.raises(NonFiniteError, match=rf"patches: {count} contain NaN or infinite values"):
        run_job(tiny_model, evalset, NoFarm(), JobConfig(profile="b-u585i-iot02a", progress=False), out)
    assert not out.exists()


def test_cli_hil_run_on_an_all_nan_store_exits_2_with_one_line(tiny_model, tmp_path, capsys) -> None:
    import numpy as np

    from aed.outputs import write_manifest
    from aed.patchstore import write_patch_store
    from components.cli import main as aed_main

    # `aed patch` no longer writes a non-finite store; an old or hand-made one (shards then manifest) is refused here
    store = tmp_path / "nan-store"
    clips = [({"clip_id": f"c{n}", "label": "dog", "fold": 1, "split": "test"},
              np.zeros((3, 64, 96, 1), np.float32)) for n in range(6)]  # fmt: skip
    write_patch_store(store, clips, ["dog", "rain"])
    for shard in store.glob("shard-*.npy"):
        np.save(shard, np.full_like(np.load(shard), np.nan))
    write_manifest(store, "patch")
    params = tmp_path / "params.yaml"
    params.write_text(f"hil:\n  farm: local\n  inventory: {tmp_path / 'none.yaml'}\n")
    code = aed_main(["hil", "run", "--params", str(params), "--model", str(tiny_model), "--patches", str(store),
                     "--out", str(tmp_path / "hil.json"), "--no-progress"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1
    assert "nan-store: patches: 18 of 18 contain NaN or infinite values" in captured.err
    assert "agreement" not in captured.out and not (tmp_path / "hil.json").exists()


def test_hil_job_refuses_non_finite_board_outputs(tiny_model, patch_store, tmp_path, monkeypatch) -> None:
    """A board that answers NaN is a failing board: retried elsewhere, and no record is written."""
    import numpy as np

    import hil_runner.job as job

    evalset = load_eval_set(patch_store, "test")
    reference = job.host_reference(tiny_model, evalset)
    monkeypatch.setattr(job, "host_reference", lambda model, evalset: reference)
    monkeypatch.setattr(job, "dequantize", lambda values, spec: np.full(np.shape(values), np.nan, np.float32))
    out = tmp_path / "record.json"
    with pytest.raises(job.HilError, match=r"board vb0: outputs: 18 of 18 contain NaN or infinite values"):
        _run_to(tiny_model, evalset, tmp_path, out)
    assert not out.exists()


def _run_to(tiny_model, evalset, tmp: Path, out: Path) -> dict:
    with VirtualBoard(get_profile("b-u585i-iot02a"), model_path=tiny_model) as vb:
        vb.serve_pty()
        board = Board(name="vb0", profile=get_profile("b-u585i-iot02a"), port=vb.descriptor, virtual=True)
        config = JobConfig(profile="b-u585i-iot02a", latency_repeats=2, attempts=1, progress=False,
                           exchange_timeouts=Timeouts(settle=0.05))  # fmt: skip
        return run_job(tiny_model, evalset, LocalFarm([board], tmp / "locks"), config, out)
