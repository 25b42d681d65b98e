"""`aed pipeline run-local --runner docker`: the reduced configuration of the DAG, every task in its role image
through kfp.local.DockerRunner, gives the subprocess runner's metrics; a failing task is named with its log tail and
nothing is promoted; a missing image or engine is one line before any task."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pipelines.cli import main as aed_main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
from test_pipeline_local import REDUCED, _reduced_mirror  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODEL = "yamnet_256"
pytestmark = pytest.mark.container


def _args(tmp_path: Path, params: Path, runner: str, *extra: str) -> list[str]:
    where = tmp_path / runner
    overrides = [
        f"promote.registry={where / 'registry'}",
        f"ingest.cache_dir={where / 'cache'}",
        f"hil.workdir={where / 'hil'}",
        f"hil.lock_dir={where / 'hil' / 'locks'}",
        f"gate.baseline={tmp_path / 'baselines' / 'hil-{model_name}-{profile}.json'}",
        "promote.enabled=true",  # the reduced configuration has no final model: a trial, promoted only if asked
        *REDUCED,
    ]
    args = [
        "pipeline",
        "run-local",
        "--params",
        str(params),
        "--root",
        str(where / "root"),
        "--runner",
        runner,
    ]
    for item in overrides:
        args += ["--set", item]
    return [*args, *extra]


def _run_dir(root: Path) -> Path:
    (run,) = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return run


def _models_sha256(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.suffix in {".tflite", ".onnx"}  # the models; their records carry times and paths
    }


@pytest.mark.slow
def test_docker_runner_gives_the_subprocess_runners_metrics_and_promotes(
    built_images: dict, esc10_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("AED_DATA_MIRROR", str(_reduced_mirror(esc10_dir, tmp_path / "mirror", per_class=5)))
    params = tmp_path / "params.yaml"
    shutil.copyfile(REPO / "params.yaml", params)
    seconds = {}

    start = time.monotonic()
    assert aed_main(_args(tmp_path, params, "subprocess")) == 0, capsys.readouterr().err
    seconds["subprocess"] = time.monotonic() - start
    local = _run_dir(tmp_path / "subprocess" / "root")
    # approve the subprocess run's board record as the baseline, so that the docker run's gate passes and its
    # promote task runs (in the hil image, writing the registry through its mount)
    record = local / f"hil-{MODEL.replace('_', '-')}" / "metrics"
    baseline = tmp_path / "baselines" / "hil-yamnet_256-b-u585i-iot02a.json"
    accept = [
        "gate",
        "--params",
        str(params),
        "--record",
        str(record),
        "--baseline",
        str(baseline),
        "--accept",
    ]
    assert aed_main(accept) == 0
    capsys.readouterr()

    start = time.monotonic()
    assert aed_main(_args(tmp_path, params, "docker")) == 0, capsys.readouterr().err
    seconds["docker"] = time.monotonic() - start
    docked = _run_dir(tmp_path / "docker" / "root")
    summary = json.loads((docked / "summary.json").read_text())
    tasks = {t["task"] for t in summary["tasks"]}
    assert all(t["exit"] == 0 for t in summary["tasks"])
    assert {
        "ingest",
        "validate",
        "patch",
        "train-yamnet-256",
        "hil-yamnet-256",
        "promote-yamnet-256",
    } <= tasks
    assert tasks == {t["task"] for t in json.loads((local / "summary.json").read_text())["tasks"]} | {
        "promote-yamnet-256"
    }

    # the same metrics, the same int8 model, the same board figures
    evaluation = {
        run: json.loads((run / "evaluate-yamnet-256" / "metrics").read_text())[MODEL]
        for run in (local, docked)
    }
    assert evaluation[docked] == evaluation[local] and evaluation[local]
    assert _models_sha256(docked / "quantize-yamnet-256" / "quantized") == _models_sha256(
        local / "quantize-yamnet-256" / "quantized"
    )
    board = {run: json.loads((run / "hil-yamnet-256" / "metrics").read_text()) for run in (local, docked)}
    assert board[docked]["accuracy"] == board[local]["accuracy"]
    # the board task ran in the hil image, which has no TensorFlow (its record lists the packages it saw)
    assert "tensorflow-cpu" in board[local]["tools"] and "tensorflow-cpu" not in board[docked]["tools"]
    verdict = summary["models"][MODEL]
    assert verdict["gate_verdict"] == "pass" and verdict["promoted_version"]
    latest = json.loads((tmp_path / "docker" / "registry" / MODEL / "latest.json").read_text())
    assert latest["version"] == verdict["promoted_version"]
    print(
        f"\nreduced DAG wall time: SubprocessRunner {seconds['subprocess']:.0f} s, DockerRunner {seconds['docker']:.0f} s "
        f"(load average {os.getloadavg()[0]:.1f})"
    )


def test_failing_task_in_a_container_is_named_with_its_log_tail_and_nothing_is_promoted(
    built_images: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    monkeypatch.setenv("AED_DATA_MIRROR", str(empty))
    code = aed_main(_args(tmp_path, REPO / "params.yaml", "docker"))
    err = capsys.readouterr().err
    assert code == 2
    assert "aed pipeline run-local: error: task 'ingest' failed (exit code 1); log: " in err
    log = _run_dir(tmp_path / "docker" / "root") / "ingest" / "task.log"
    assert log.is_file() and str(log) in err
    assert "last lines of the log:" in err and "no ESC-50 layout found" in err
    assert "no ESC-50 layout found" in log.read_text()
    assert [p.name for p in _run_dir(tmp_path / "docker" / "root").iterdir()] == ["ingest"]
    assert not (tmp_path / "docker" / "registry").exists() or not any(
        (tmp_path / "docker" / "registry").iterdir()
    )


def test_missing_image_is_one_line_before_any_task(docker_client: Any, tmp_path: Path, capsys) -> None:
    args = _args(
        tmp_path, REPO / "params.yaml", "docker", "--registry", "registry.invalid/nobody", "--tag", "0"
    )
    assert aed_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "aed pipeline run-local: error: --runner docker: images registry.invalid/nobody/aed-data:0, "
        "registry.invalid/nobody/aed-hil:0, registry.invalid/nobody/aed-train:0 not here (never pulled): "
        "run `make images`"
    ]
    assert not (tmp_path / "docker" / "root").exists()


def test_no_engine_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-engine.sock'}")
    assert aed_main(_args(tmp_path, REPO / "params.yaml", "docker")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "aed pipeline run-local: error: --runner docker: no container engine"
    )


def test_an_input_the_images_user_cannot_read_is_one_line_before_any_task(
    built_images: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    if os.getuid() != 0:
        pytest.skip("as a user, the tasks run with that user's uid: what it can read, they can")
    mirror = tmp_path / "mirror"
    (mirror / "audio").mkdir(parents=True)
    (mirror / "meta.csv").write_text("filename,fold,target,category\n")
    (mirror / "meta.csv").chmod(0o600)
    monkeypatch.setenv("AED_DATA_MIRROR", str(mirror))
    assert aed_main(_args(tmp_path, REPO / "params.yaml", "docker")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"aed pipeline run-local: error: --runner docker: {mirror / 'meta.csv'} is not readable by the images' "
        "user (uid 1000): make it readable by all (chmod o+r, o+x for a folder)"
    ]
    assert not (tmp_path / "docker" / "root").exists()


def test_records_are_readable_by_other_users(tmp_path: Path) -> None:
    """A record (a gate baseline accepted on the host, a task's output) is read by the containers' user."""
    from aed.records import write_json

    write_json(tmp_path / "baseline.json", {"a": 1})
    assert (tmp_path / "baseline.json").stat().st_mode & 0o777 == 0o644
