"""`aed pipeline run-local`: kfp.local SubprocessRunner in this environment, failures, and the end-to-end DAG."""

from __future__ import annotations

import importlib
import json
import os
import shutil
from pathlib import Path

import kfp_synthetic
import pandas as pd
import pytest

from pipelines.aed_pipeline import EXTRA_TASKS, STEPS
from pipelines.cli import main as aed_main
from pipelines.local_run import LocalRunError, run_local
from tests.dvc_workspace import snapshot, stale_clone

REPO = Path(__file__).resolve().parents[2]


def test_failed_task_stops_the_run_and_names_its_log(tmp_path: Path) -> None:
    with pytest.raises(LocalRunError) as caught:
        run_local(kfp_synthetic.failing_pipeline(), {}, tmp_path / "root", task_timeout_s=120)
    message, run = str(caught.value), caught.value.run
    assert message.startswith("task 'boom' failed (exit code 1); log: ")
    log = Path(message.split("log: ")[1].split("\n")[0])
    assert log.is_file() and log.name == "task.log"
    assert "synthetic failure in first" in log.read_text()
    assert "synthetic failure in first" in message  # the log's tail is in the error
    # nothing started after the failure: every task the orchestrator offered afterwards was refused
    failed_at = next(i for i, t in enumerate(run.tasks) if t.returncode != 0)
    assert run.tasks[failed_at].name == "boom"
    later = run.tasks[failed_at + 1 :]
    assert all(t.skipped for t in later), [(t.name, t.skipped) for t in later]
    started = [t for t in run.tasks if not t.skipped]
    assert len(list((tmp_path / "root").rglob("executor_output.json"))) <= len(started)
    if later:
        assert "not started after the failure: " in message


def test_task_timeout_kills_the_task(tmp_path: Path) -> None:
    with pytest.raises(LocalRunError, match="task 'sleepy' failed") as caught:
        run_local(kfp_synthetic.sleepy_pipeline(), {}, tmp_path / "root", task_timeout_s=3)
    assert "killed after the 3 s limit" in str(caught.value)


def test_bad_params_fail_before_any_task_starts(tmp_path: Path, capsys) -> None:
    root = tmp_path / "root"
    for override, expected in [
        ("patch.n_mels=abc", "patch.n_mels: expected an integer, got 'abc'"),
        ("patch.n_mels=2", "patch.n_mels: 2 is out of range [8, inf]"),
        (
            "validate.on_bad_file=ignore",
            "validate.on_bad_file: expected one of ['quarantine', 'fail'], got 'ignore'",
        ),
        ("models.names=[yamnet_512]", "models.names: unknown model 'yamnet_512'"),
        ("train.epochs=ten", "train.epochs: expected an integer, got 'ten'"),
        ("train.volume_min=2.0", "train.volume_min 2.0 > train.volume_max 1.2"),
        ("quantize.opset=99", "quantize.opset: 99 is out of range [13, 21]"),
        ("pipeline.task_timeout_s=1", "pipeline.task_timeout_s: 1.0 is out of range"),
        ("promote.timeout_s=slow", "promote.timeout_s: expected a number, got 'slow'"),
        ("patch.no_such_key=1", "unknown key patch.no_such_key"),
        ("patch.n_mels=[1", "--set 'patch.n_mels=[1': the value is not valid YAML"),
        ("n_mels=1", "--set 'n_mels=1': expected section.key=value"),
    ]:
        code = aed_main(
            ["pipeline", "run-local", "--params", str(REPO / "params.yaml"), "--root", str(root)]
            + [
                "--set",
                override,
            ]
        )
        err = capsys.readouterr().err
        assert code == 2, override
        assert expected in err, (override, err)
        assert "Traceback" not in err
        assert not root.exists(), "a task started despite bad params"


# -- the real DAG -------------------------------------------------------------------------------------------------
def _reduced_mirror(source: Path, target: Path, per_class: int) -> Path:
    """A copy of the ESC-10 mirror with `per_class` clips per class, spread over the folds."""
    meta = pd.read_csv(source / "meta.csv")
    chosen = pd.concat(
        group.sort_values(["fold", "filename"]).groupby("fold").head(1).head(per_class)
        for _, group in meta.groupby("category")
    )
    (target / "audio").mkdir(parents=True)
    chosen.to_csv(target / "meta.csv", index=False)
    for name in chosen["filename"]:
        shutil.copyfile(source / "audio" / name, target / "audio" / name)
    return target


def _existing_steps() -> list[str]:
    """The prefix of the DAG whose steps exist (all of them once every step has landed)."""
    present = []
    for step in STEPS:
        try:
            importlib.import_module(f"components.{step}")
        except ModuleNotFoundError:
            break
        present.append(step)
    return present


def _run_dir(root: Path, newest: bool = False) -> Path:
    runs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert newest or len(runs) == 1, runs
    return runs[-1]


@pytest.mark.slow
def test_ingest_failure_stops_the_run_and_promotes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    monkeypatch.setenv("AED_DATA_MIRROR", str(empty))
    root, registry = tmp_path / "root", tmp_path / "registry"
    code = aed_main(
        [
            "pipeline",
            "run-local",
            "--root",
            str(root),
            "--set",
            f"promote.registry={registry}",
            "--set",
            f"ingest.cache_dir={tmp_path / 'cache'}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "aed pipeline run-local: error: task 'ingest' failed (exit code 1); log: " in err
    log = _run_dir(root) / "ingest" / "task.log"
    assert log.is_file() and str(log) in err
    assert "no ESC-50 layout found" in log.read_text()
    assert [p.name for p in _run_dir(root).iterdir()] == ["ingest"]
    assert not registry.exists()


@pytest.mark.slow
def test_run_local_end_to_end_on_a_reduced_configuration(
    esc10_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    steps = _existing_steps()
    if len(steps) < len(STEPS) and os.environ.get("CI"):
        pytest.fail(f"steps missing from components/: {STEPS[len(steps) :]}")
    mirror = _reduced_mirror(esc10_dir, tmp_path / "mirror", per_class=5)
    monkeypatch.setenv("AED_DATA_MIRROR", str(mirror))
    # Run where `make demo` ran: a clone whose models/yamnet_1024/float holds other splits (the README's two
    # commands in order). No task may read it, nor write there.
    clone = stale_clone(tmp_path / "clone")
    untouched = snapshot(clone)
    monkeypatch.chdir(clone)
    root, registry = tmp_path / "root", tmp_path / "registry"
    overrides = [
        f"promote.registry={registry}",
        f"ingest.cache_dir={tmp_path / 'cache'}",
        f"hil.workdir={tmp_path / 'hil'}",
        f"hil.lock_dir={tmp_path / 'hil' / 'locks'}",
        f"gate.baseline={tmp_path / 'baselines' / 'hil-{model_name}-{profile}.json'}",
        "promote.enabled=true",  # the reduced configuration has no final model: a trial, promoted only if asked
        *REDUCED,
    ]
    # a snapshot of params.yaml: both runs must see the same params for the second one to reuse the first's tasks
    params = tmp_path / "params.yaml"
    shutil.copyfile(REPO / "params.yaml", params)
    args = [
        "pipeline",
        "run-local",
        "--params",
        str(params),
        "--root",
        str(root),
        "--until",
        steps[-1],
        "--cache",
    ]
    for item in overrides:
        if item.split(".")[0] in {*steps, "pipeline", "models"}:
            args += ["--set", item]

    # first run: no baseline yet, so the gate cannot decide and nothing is promoted
    assert aed_main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    run_dir = _run_dir(root)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["run_dir"] == str(run_dir) and f"run: {run_dir}" in out
    # every task ran, succeeded, left its log, and every output it declared exists
    ran = {t["task"] for t in summary["tasks"]}
    extra = [
        task for task, (step, _) in EXTRA_TASKS.items() if step in steps
    ]  # evaluate_streaming, hil_stream
    expected = set(steps[:3]) | {
        f"{s.replace('_', '-')}-yamnet-256" for s in steps[3:] + extra if s != "promote"
    }
    # YAMNet-256's configured teacher, YAMNet-1024, is not in models.names: not trained (as under DVC)
    assert ran == expected and all(t["exit"] == 0 for t in summary["tasks"])
    if "train" in steps:
        trained = json.loads((run_dir / "train-yamnet-256" / "metrics").read_text())
        assert trained["splits"]["fold-1"]["distilled"] is False  # no teacher trained: skipped, and said so
        assert "teacher" not in trained["inputs"] and trained["distillation"]
    for executor_output in run_dir.rglob("executor_output.json"):
        task_dir = executor_output.parent
        assert (task_dir / "task.log").is_file()
        for name, spec in json.loads(executor_output.read_text()).get("artifacts", {}).items():
            for artifact in spec["artifacts"]:
                assert Path(artifact["uri"]).exists(), f"{task_dir.name}: output {name} missing"
    assert (run_dir / "patch" / "patches" / "index.csv").is_file()
    assert "50 of 50 clips passed" in (run_dir / "validate" / "report").read_text()
    assert len(list((root / ".cache").glob("*.json"))) >= 3  # kfp.local's cache entries for the next run
    if "gate" not in steps:
        return
    verdict = summary["models"]["yamnet_256"]
    assert verdict["gate_passed"] is False and verdict["gate_verdict"] == "undecidable"
    assert "baseline present" in Path(verdict["gate_table"]).read_text()
    assert not registry.exists()

    # accept this run's board record as the baseline (the explicit approval step), then run again: the cached
    # steps are reused, hil and gate run again, the gate passes and promote copies the model to the registry
    hil_record = run_dir / "hil-yamnet-256" / "metrics"
    baseline = tmp_path / "baselines" / "hil-yamnet_256-b-u585i-iot02a.json"
    accept = [
        "gate",
        "--params",
        str(REPO / "params.yaml"),
        "--record",
        str(hil_record),
        "--baseline",
        str(baseline),
    ]
    assert aed_main([*accept, "--accept"]) == 0
    assert aed_main(args) == 0, capsys.readouterr().err
    second = json.loads((_run_dir(root, newest=True) / "summary.json").read_text())
    # the uncached tasks run again (the board, its stream check, the gate), the rest comes from the cache
    assert {t["task"] for t in second["tasks"]} == {
        "hil-yamnet-256", "hil-stream-yamnet-256", "gate-yamnet-256", "promote-yamnet-256"}  # fmt: skip
    verdict = second["models"]["yamnet_256"]
    assert verdict["gate_passed"] is True and verdict["gate_verdict"] == "pass"
    assert snapshot(clone) == untouched, "a task read or wrote the working directory"
    latest = json.loads((registry / "yamnet_256" / "latest.json").read_text())
    assert latest["version"] == verdict["promoted_version"]
    version_dir = registry / "yamnet_256" / latest["version"]
    for key in ("model/model_int8.tflite", "float/model.keras", "records/hil.json", "gate/gate.json") + (
        "firmware/user_mel_tables.c",
        "firmware/golden_vectors.h",
    ):
        assert (version_dir / key).is_file(), key
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert json.loads((version_dir / "gate" / "gate.json").read_text())["verdict"] == "pass"
    assert {f["key"] for f in manifest["files"]} >= {"model/model_int8.tflite", "records/evaluate.json"}


# Settings that make the DAG small enough for CI (about 3 minutes on 2 cores): 5 clips per class come from the
# reduced mirror; one model branch (YAMNet-1024's branch runs the same task code, and both branches are checked
# in the compiled IR), one test fold, no final model, 2 epochs, a small calibration set, 40 patches on the board.
# Keys of steps that have not landed are dropped above.
REDUCED = [
    "models.names=[yamnet_256]",
    "validate.min_clips_per_class=5",
    "train.folds=[1]",
    "train.final_model=false",
    "train.epochs=2",
    "train.augment=false",
    "train.fine_tune_epochs=0",
    "quantize.calibration_size=32",
    "hil.max_patches=40",
]
