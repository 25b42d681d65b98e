"""Registry versions are the promoted content without timestamps, and only the runs meant to promote do.

- The same model, records that differ only in when / how long / where (a re-run of hil and gate): one version,
  one registry entry, latest.json untouched, and the console says "already promoted as X".
- A changed model or a changed figure: a new version. Promoting an earlier content again moves latest back.
- `dvc exp run` (DVC_EXP_NAME / DVC_EXP_BASELINE_REV in the environment) and a trial model (a fold's, no final
  model) do not promote under `promote.enabled: auto`, and say so; `enabled: true` or `--enabled true` does.

The verdicts are the real gate's (components.gate.run) on synthetic HIL records, as in test_promote_trust.py; the
records with volatile fields are the repository's own reports from `make demo`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aed.records import sha256_file
from aed.registry import content_digests, is_volatile, open_store, publish
from components.gate import run as gate_run
from hil_runner.gate import GateParams
from pipelines.cli import main as aed_main
from tests.conftest import REPO
from tests.gate_records import set_metric, synthetic_record, write
from tests.kfp_artifacts import FakeArtifact

MODEL = "yamnet_256"


def _rerun_hil(record: Path, run: int) -> None:
    """What a re-run of the hil stage changes in its record: the time, the board's pty, wall-clock figures."""
    data = json.loads(record.read_text())
    data["created"] = f"2026-12-0{run}T10:00:00+00:00"
    data["board"]["descriptor"] = f"serial:/dev/pts/{run}:921600"
    data["firmware"]["compile_datetime"] = f"Tue Dec  {run} 10:00:00 2026"
    data["throughput"] = {"eval_seconds": 50.0 + run, "patches_per_s": 40.0 - run}
    data["failed_attempts"] = [{"board": "vb1", "error": "timeout"}] * (run - 1)
    write(record, data)


def _gate(p: dict[str, Path]) -> bytes:
    assert gate_run(GateParams(), p["record"], p["verdict"], baseline=p["baseline"])["passed"]
    return p["verdict"].read_bytes()


@pytest.fixture
def promotion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A model in a `final` split folder, its HIL record, a baseline, the real gate's verdict, a params file."""
    for name in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(name, raising=False)
    model = tmp_path / "models" / MODEL / "int8" / "final" / "model_int8.tflite"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(range(200)))
    record = tmp_path / "reports" / "hil.json"
    record.parent.mkdir()
    write(record, synthetic_record(sha256_file(model), str(model)))
    p = {"model": model, "record": record, "baseline": write(tmp_path / "baseline.json", synthetic_record()),
         "verdict": tmp_path / "reports" / "gate.json", "registry": tmp_path / "registry",
         "out": tmp_path / "reports" / "promote.json", "params": tmp_path / "params.yaml"}  # fmt: skip
    _rerun_hil(record, 1)
    _gate(p)
    _params(p)
    return p


def _params(p: dict[str, Path], enabled: str = "auto") -> None:
    write(p["params"], f"promote:\n  registry: {p['registry']}\n  enabled: {enabled}\n")


def _promote(p: dict[str, Path], capsys, *extra: str) -> tuple[int, str, dict[str, Any]]:
    args = ["promote", "--params", str(p["params"]), "--model-name", MODEL, "--gate", str(p["verdict"]),
            "--artifact", f"model={p['model']}", "--artifact", f"hil={p['record']}", "--out", str(p["out"]),
            *extra]  # fmt: skip
    code = aed_main(args)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    return code, captured.out + captured.err, json.loads(p["out"].read_text())


def _versions(p: dict[str, Path]) -> list[str]:
    folder = p["registry"] / MODEL
    return sorted(d.name for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []


def _latest(p: dict[str, Path]) -> str:
    return json.loads((p["registry"] / MODEL / "latest.json").read_text())["version"]


def test_three_identical_runs_are_one_version_and_latest_is_untouched(promotion, capsys) -> None:
    p = promotion
    code, out, record = _promote(p, capsys)
    assert code == 0 and f"{MODEL}: promoted version {record['version']}" in out
    version, latest_file = record["version"], p["registry"] / MODEL / "latest.json"
    latest_before = (latest_file.read_bytes(), latest_file.stat().st_mtime_ns)
    verdicts = {p["verdict"].read_bytes()}
    for run in (2, 3):
        _rerun_hil(p["record"], run)  # a re-run of hil and gate: new timestamps, same model and figures
        verdicts.add(_gate(p))
        code, out, record = _promote(p, capsys)
        assert code == 0, out
        assert f"{MODEL}: already promoted as version {version} (nothing copied)" in out
        assert record["promoted"] is True and record["outcome"] == "already-promoted"
        assert record["version"] == version and record["message"] in out
    assert len(verdicts) == 3  # the verdict's bytes (and the HIL record it names) changed at every run
    assert _versions(p) == [version]
    assert (latest_file.read_bytes(), latest_file.stat().st_mtime_ns) == latest_before
    # the registry keeps the first promotion's files, whose manifest names them by their own sha256
    manifest = json.loads((p["registry"] / MODEL / version / "manifest.json").read_text())
    for entry in manifest["files"]:
        assert sha256_file(p["registry"] / MODEL / version / entry["key"]) == entry["sha256"]


def test_a_changed_model_is_a_new_version_and_the_old_one_again_moves_latest_back(promotion, capsys) -> None:
    p = promotion
    first = _promote(p, capsys)[2]["version"]
    original = p["model"].read_bytes()
    p["model"].write_bytes(original[:-1] + b"\x00")  # one byte
    write(p["record"], synthetic_record(sha256_file(p["model"]), str(p["model"])))
    _gate(p)
    code, out, record = _promote(p, capsys)
    second = record["version"]
    assert code == 0 and second != first and record["outcome"] == "promoted"
    assert _versions(p) == sorted([first, second]) and _latest(p) == second
    # back to the first model (a revert): no new entry, latest names it again, and the line says so
    p["model"].write_bytes(original)
    write(p["record"], synthetic_record(sha256_file(p["model"]), str(p["model"])))
    _rerun_hil(p["record"], 4)
    _gate(p)
    code, out, record = _promote(p, capsys)
    assert code == 0 and record["version"] == first and record["previous_latest"] == second
    assert (
        f"already promoted as version {first} (nothing copied; latest moved back to it from {second})" in out
    )
    assert _versions(p) == sorted([first, second]) and _latest(p) == first


def test_a_changed_figure_is_a_new_version(promotion, capsys) -> None:
    p = promotion
    first = _promote(p, capsys)[2]["version"]
    write(p["record"], set_metric(json.loads(p["record"].read_text()), "clip_accuracy", 0.96))
    _gate(p)
    code, _, record = _promote(p, capsys)
    assert code == 0 and record["outcome"] == "promoted" and record["version"] != first


# Records of `make demo` (the reference run, docs/reference-run/), each with what a re-run changes, and a figure whose change must show.
REPORTS = [
    ("hil_yamnet_256.json", {"created": "2030-01-01T00:00:00+00:00", "board.descriptor": "serial:/dev/pts/9:1",
                             "firmware.compile_datetime": "Wed Jan  1 2030", "throughput.eval_seconds": 1.0,
                             "throughput.patches_per_s": 1.0, "latency.median_ms": 1.0}, "metrics.clip_accuracy"),
    ("gate_yamnet_256.json", {"created": "2030-01-01T00:00:00+00:00", "model.path": "/tmp/kfp/1/model",
                              "record.path": "/tmp/kfp/1/metrics"}, "thresholds.min_cosine"),
    ("convert_yamnet_256.json", {"created": "2030-01-01T00:00:00+00:00", "estimator.elapsed_s": 9.0},
     "weights_bytes"),
    ("patch.json", {"created": "2030-01-01T00:00:00+00:00", "seconds": 1.0, "patches_per_second": 1.0,
                    "real_time_factor": 1.0}, "n_patches"),
]  # fmt: skip


def _set(document: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        document = document[key]
    assert last in document, dotted
    document[last] = value


@pytest.mark.parametrize(("name", "volatile", "figure"), REPORTS, ids=[r[0] for r in REPORTS])
def test_a_record_differing_only_in_run_facts_has_the_same_digest(tmp_path, name, volatile, figure) -> None:
    original = json.loads((REPO / "docs" / "reference-run" / name).read_text())
    rerun, changed = json.loads(json.dumps(original)), json.loads(json.dumps(original))
    for dotted, value in volatile.items():
        _set(rerun, dotted, value)
    old_figure = changed
    for key in figure.split("."):
        old_figure = old_figure[key]
    _set(changed, figure, old_figure + 1)
    paths = [write(tmp_path / f"{label}.json", doc) for label, doc in
             (("original", original), ("rerun", rerun), ("changed", changed))]  # fmt: skip
    # indented differently too: the digest is of the parsed record, not of its layout
    (tmp_path / "rerun.json").write_text(json.dumps(rerun, separators=(",", ":")))
    digests = content_digests(paths)
    assert sha256_file(paths[0]) != sha256_file(paths[1])
    assert digests[paths[0]] == digests[paths[1]]
    assert digests[paths[0]] != digests[paths[2]]


def test_volatile_keys_are_run_facts_only() -> None:
    for key in ("created", "compile_datetime", "started_at", "elapsed_s", "latency_ms", "eval_seconds", "path",
                "descriptor", "hostname", "patches_per_second", "work_dir", "failed_attempts"):  # fmt: skip
        assert is_volatile(key), key
    for key in ("class_names", "clip_accuracy", "sha256", "model_sha256", "weights_bytes", "runtime",
                "runtime_version", "source", "cycles_median", "patches", "key", "tools", "board"):  # fmt: skip
        assert not is_volatile(key), key


def test_a_non_json_file_and_an_unparsable_json_file_are_hashed_as_bytes(tmp_path) -> None:
    store = open_store(tmp_path / "registry")
    broken = write(tmp_path / "in" / "broken.json", '{"created": 1,')
    first = publish(store, MODEL, {"r": broken}, {}).version
    broken.write_text('{"created": 2,')
    assert publish(store, MODEL, {"r": broken}, {}).version != first
    assert publish(store, MODEL, {"r": broken}, {}).new is False


def test_a_half_written_version_is_completed_by_the_next_promotion(tmp_path) -> None:
    """No manifest: the copy was interrupted; the same content promoted again copies it whole."""
    store = open_store(tmp_path / "registry")
    model = write(tmp_path / "in" / "model.bin", "weights")
    first = publish(store, MODEL, {"model": model}, {})
    manifest = tmp_path / "registry" / MODEL / first.version / "manifest.json"
    manifest.unlink()
    (tmp_path / "registry" / MODEL / first.version / "model" / "model.bin").unlink()
    (tmp_path / "registry" / MODEL / "latest.json").write_text("{not json")
    again = publish(store, MODEL, {"model": model}, {})
    assert again.version == first.version and again.new is True and manifest.is_file()
    assert (tmp_path / "registry" / MODEL / first.version / "model" / "model.bin").read_text() == "weights"
    assert json.loads((tmp_path / "registry" / MODEL / "latest.json").read_text())["version"] == first.version
    # a broken latest.json beside a whole version: nothing copied, latest.json written again
    (tmp_path / "registry" / MODEL / "latest.json").write_text("[]")
    third = publish(store, MODEL, {"model": model}, {})
    assert third.new is False and third.previous is None
    assert json.loads((tmp_path / "registry" / MODEL / "latest.json").read_text())["version"] == first.version


@pytest.mark.parametrize("variable", ["DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"])
def test_an_experiment_does_not_promote_and_says_so(promotion, capsys, monkeypatch, variable) -> None:
    monkeypatch.setenv(variable, "gummy-bear")
    code, out, record = _promote(promotion, capsys)
    assert code == 0, out
    line = f"{MODEL}: gate passed, not promoted because this is a DVC experiment ({variable}=gummy-bear)"
    assert line in out and "enable with dvc exp run -S promote.enabled=true" in out
    assert record["promoted"] is False and record["outcome"] == "skipped" and record["message"] in out
    assert not promotion["registry"].exists()


@pytest.mark.parametrize(
    ("enabled", "flag", "experiment", "promoted"),
    [
        ("true", None, True, True),  # asked in params: promotes inside an experiment
        ("auto", "true", True, True),  # asked on the command line
        ("false", None, False, False),  # never, even in dvc repro
        ("true", "false", False, False),  # the flag beats params
        ("false", "auto", False, True),
    ],
)
def test_enabled_setting_and_flag_override_the_default(
    promotion, capsys, monkeypatch, enabled, flag, experiment, promoted
) -> None:
    if experiment:
        monkeypatch.setenv("DVC_EXP_NAME", "gummy-bear")
    _params(promotion, enabled)
    code, out, record = _promote(promotion, capsys, *(["--enabled", flag] if flag else []))
    assert code == 0, out
    assert record["promoted"] is promoted and promotion["registry"].exists() is promoted
    if not promoted:
        assert "not promoted because promote.enabled is false; set it to auto or true to promote" in out


def test_a_trial_model_does_not_promote_unless_asked(promotion, capsys) -> None:
    """The quick run-local configuration trains no final model: the deployable model is a fold's."""
    p = promotion
    trial = p["model"].parent.parent / "fold-1" / p["model"].name
    trial.parent.mkdir()
    shutil.move(p["model"], trial)
    p["model"] = trial
    code, out, record = _promote(p, capsys)
    assert code == 0 and record["outcome"] == "skipped" and not p["registry"].exists()
    assert "not promoted because trial run: the model is split fold-1's, not a final model" in out
    assert "enable with --set promote.enabled=true" in out
    code, out, record = _promote(p, capsys, "--enabled", "true")
    assert code == 0 and record["outcome"] == "promoted" and _versions(p) == [record["version"]]


@pytest.mark.parametrize("value", ["maybe", "1", "0", "[true]", "'true'", "null"])
def test_a_bad_enabled_value_is_one_line(promotion, capsys, value) -> None:
    write(promotion["params"], f"promote:\n  registry: {promotion['registry']}\n  enabled: {value}\n")
    code = aed_main(["promote", "--params", str(promotion["params"]), "--model-name", MODEL, "--gate",
                     str(promotion["verdict"]), "--artifact", f"model={promotion['model']}", "--out",
                     str(promotion["out"])])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "promote.enabled: expected true, false or auto, got" in err
    assert not promotion["registry"].exists()


def test_dvc_exp_run_skips_and_dvc_repro_promotes(promotion, tmp_path) -> None:
    """The installed DVC: `dvc exp run` gives its stage commands DVC_EXP_NAME, `dvc repro` does not."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("model", "record", "verdict"):
        shutil.copyfile(promotion[name], project / promotion[name].name)
    model = project / "models" / MODEL / "int8" / "final" / promotion["model"].name
    model.parent.mkdir(parents=True)
    shutil.move(project / promotion["model"].name, model)
    shutil.copyfile(promotion["params"], project / "params.yaml")
    stage = (f"{sys.executable} -m pipelines.cli promote --model {MODEL} --gate gate.json --artifact model={model.relative_to(project)} "
             "--artifact hil=hil.json --out promote.json")  # fmt: skip
    write(project / "dvc.yaml", {"stages": {"promote": {"cmd": stage, "deps": ["gate.json", "hil.json"],
                                 "params": ["promote"], "metrics": [{"promote.json": {"cache": False}}]}}})  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_EXP")}
    env |= {"DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(REPO), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip

    def run(*command: str) -> None:
        done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr

    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "project")
    run(sys.executable, "-m", "dvc", "exp", "run")
    record = json.loads((project / "promote.json").read_text())
    assert record["outcome"] == "skipped" and "DVC_EXP_NAME=" in record["message"]
    assert not promotion["registry"].exists()
    run(sys.executable, "-m", "dvc", "repro", "--force")
    record = json.loads((project / "promote.json").read_text())
    assert record["outcome"] == "promoted" and _versions(promotion) == [record["version"]]


def _kfp_run(root: Path, params: str, split: str, capsys) -> tuple[dict[str, Any], str]:
    """The gate and promote task bodies of one kfp.local run under `root` (every run has its own paths)."""
    from components.gate.task import gate
    from components.promote.task import promote

    int8 = root / "quantized" / split / "model_int8.tflite"
    int8.parent.mkdir(parents=True)
    int8.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(range(50)))
    (root / "model" / split).mkdir(parents=True)
    (root / "model" / split / "model.keras").write_bytes(b"keras")
    write(root / "tables" / "user_mel_tables.c", "/* tables */\n")
    (root / "generated").mkdir()
    board = write(root / "board" / "metrics", synthetic_record(sha256_file(int8), str(int8)))
    _rerun_hil(board, len(list(root.parent.iterdir())))
    evaluation, footprint = (
        write(root / "evaluation", {"accuracy": 0.9}),
        write(root / "footprint", {"flash": 1}),
    )
    verdict, promotion = FakeArtifact(root / "verdict"), FakeArtifact(root / "promotion.json")
    assert gate(params, MODEL, FakeArtifact(evaluation), FakeArtifact(footprint), FakeArtifact(board), verdict,
                FakeArtifact(root / "table.md"))  # fmt: skip
    promote(params, MODEL, FakeArtifact(root / "model"), FakeArtifact(root / "quantized"),
            FakeArtifact(root / "generated"), FakeArtifact(root / "tables"), FakeArtifact(evaluation),
            FakeArtifact(footprint), FakeArtifact(board), verdict, promotion)  # fmt: skip
    return json.loads(Path(promotion.path).read_text()), capsys.readouterr().out


def test_kfp_trial_runs_do_not_promote_and_identical_runs_are_one_version(
    tmp_path, capsys, monkeypatch
) -> None:
    """The quick run-local configuration (no final model) promotes only when asked; two kfp.local runs of the
    same model, at other paths and times, are one version."""
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    baseline = write(tmp_path / "baselines" / "hil-yamnet_256-b-u585i-iot02a.json", synthetic_record())
    registry = tmp_path / "registry"

    def params(**promote: Any) -> str:
        return json.dumps({"gate": {"baseline": str(baseline.parent / "hil-{model_name}-{profile}.json")},
                           "promote": {"registry": str(registry), **promote}})  # fmt: skip

    record, out = _kfp_run(tmp_path / "runs" / "1", params(), "fold-1", capsys)
    assert record["outcome"] == "skipped" and not registry.exists()
    assert (
        "promote: yamnet_256: gate passed, not promoted because trial run: the model is split fold-1's" in out
    )
    record, out = _kfp_run(tmp_path / "runs" / "2", params(enabled=True), "fold-1", capsys)
    assert record["outcome"] == "promoted" and f"promoted version {record['version']}" in out
    again, out = _kfp_run(tmp_path / "runs" / "3", params(enabled=True), "fold-1", capsys)
    assert again["outcome"] == "already-promoted" and again["version"] == record["version"]
    assert [d.name for d in (registry / MODEL).iterdir() if d.is_dir()] == [record["version"]]
    final, _ = _kfp_run(tmp_path / "runs" / "4", params(), "final", capsys)  # a final model: auto promotes
    assert final["outcome"] in ("promoted", "already-promoted")
