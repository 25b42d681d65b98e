"""docs/own-dataset.md, run as a new user runs it: a generated 3-class dataset (36 WAV files, a third of them
44.1 kHz stereo, a `filename,label,fold` CSV) through the walkthrough's own commands, in a git + DVC copy of the
project: one model, a short run, the first baseline, the gate, a promotion, an experiment that does not promote,
and a dataset edit that the next run picks up."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.dvc_workspace import CODE_PACKAGES, sh
from tests.own_dataset import CLASSES, make_own_dataset

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
# what a clone holds beside the code that `make data` and `dvc repro` use
PROJECT_FILES = (
    "dvc.yaml", "params.yaml", "data.dvc", ".gitignore", ".dvcignore", "Makefile", "pyproject.toml", "requirements.lock",
)  # fmt: skip
DOC = Path(__file__).resolve().parents[1] / "docs" / "own-dataset.md"


def _project_copy(repo_dir: Path, work: Path) -> None:
    work.mkdir()
    for name in PROJECT_FILES:
        shutil.copy2(repo_dir / name, work / name)  # times kept: make sees the venv as up to date
    for package in CODE_PACKAGES:
        shutil.copytree(repo_dir / package, work / package, ignore=shutil.ignore_patterns("__pycache__"))
    (work / ".venv").symlink_to(BIN.parent)  # the Makefile's venv: this interpreter's


def _environment() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("AED_DATA_MIRROR", "MAKEFLAGS", "MAKELEVEL")
    }  # the user's dataset comes from params.yaml, not from the project's ESC-10 mirror
    return {
        **env,
        "PATH": f"{BIN}{os.pathsep}{env['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GX_ANALYTICS_ENABLED": "False",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }


def _edit_params(work: Path, dataset: Path) -> None:
    """The walkthrough's params.yaml edits (sections 2 to 4), plus a smaller calibration sample for speed."""
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["ingest"].update(source=str(dataset), sha256=None, layout="csv", csv="labels.csv")
    params["validate"].update(classes=list(CLASSES), fold_min=1, fold_max=3)
    params["models"]["names"] = ["yamnet_256"]
    params["train"].update(folds=[1], epochs=10, fine_tune_epochs=0, augment_copies=2)
    params["quantize"]["calibration_size"] = 32
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _registry_versions(work: Path) -> list[str]:
    model_dir = work / "work" / "registry" / "yamnet_256"
    return sorted(p.name for p in model_dir.iterdir() if p.is_dir()) if model_dir.exists() else []


def test_the_doc_names_every_command_this_test_runs() -> None:
    text = DOC.read_text()
    for command in (
        "aed params show --model-name yamnet_256",
        "aed pipeline dvc-yaml",
        "make data",
        "dvc repro hil",
        "aed gate --record reports/hil_yamnet_256.json --model-name yamnet_256 --accept",
        "dvc repro",
        "dvc exp run -S train.learning_rate=0.001",
        "dvc status",
    ):
        assert command in text, command


def test_own_dataset_walkthrough(tmp_path: Path, repo_dir: Path, esc10_dir: Path) -> None:
    dataset = make_own_dataset(esc10_dir, tmp_path / "mydata")
    work = tmp_path / "project"
    _project_copy(repo_dir, work)
    env = _environment()
    sh("git", "init", "-q", cwd=work, env=env)
    sh("dvc", "init", "-q", cwd=work, env=env)

    # 2-4: params, one model, a short run
    _edit_params(work, dataset)
    shown = sh("aed", "params", "show", "--model-name", "yamnet_256", cwd=work, env=env)
    assert re.search(r"epochs\s+10\s.*params\.yaml", shown), shown
    assert "train.overrides.yamnet_256" in shown, shown  # the override's source is visible
    out = sh("aed", "pipeline", "dvc-yaml", cwd=work, env=env)
    assert "no distillation" in out, out  # its teacher yamnet_1024 is not trained
    stages = sh("dvc", "stage", "list", cwd=work, env=env)
    assert "train@yamnet_256" in stages and "yamnet_1024" not in stages, stages

    sh("make", "data", cwd=work, env=env)
    raw = pd.read_csv(work / "data" / "raw" / "catalog.csv")
    assert len(raw) == 36 and set(raw["label"]) == set(CLASSES), raw
    sh("git", "add", "-A", cwd=work, env=env)
    sh("git", "commit", "-q", "-m", "my dataset", cwd=work, env=env)

    # 4-5: up to the board, then the first baseline, explicitly
    sh("dvc", "repro", "hil", cwd=work, env=env, timeout=1800)
    validated = pd.read_csv(work / "artifacts" / "validated.csv")
    assert len(validated) == 36, validated  # 44.1 kHz stereo files resampled, not quarantined
    assert not (work / "models" / "yamnet_1024").exists()
    train = json.loads((work / "models" / "yamnet_256" / "float" / "train.json").read_text())
    assert not train["splits"]["fold-1"]["distilled"]
    sh("aed", "gate", "--record", "reports/hil_yamnet_256.json", "--model-name", "yamnet_256", "--accept",
       cwd=work, env=env)  # fmt: skip
    assert list((work / "baselines").glob("hil-yamnet_256-*.json"))

    # 5-6: gate and promotion; the same model promoted again is the same version
    out = sh("dvc", "repro", cwd=work, env=env, timeout=1800)
    assert json.loads((work / "reports" / "gate_yamnet_256.json").read_text())["verdict"] == "pass"
    assert "promoted version" in out, out
    versions = _registry_versions(work)
    assert len(versions) == 1, versions
    assert (work / "reports" / "index.html").is_file()
    out = sh("dvc", "repro", "--force", "--single-item", "promote@yamnet_256", cwd=work, env=env)
    assert f"already promoted as version {versions[0]}" in out, out
    assert _registry_versions(work) == versions
    sh("git", "add", "-A", cwd=work, env=env)
    sh("git", "commit", "-q", "-m", "first run", cwd=work, env=env)

    # 7: an experiment trains and reports, and does not promote
    out = sh("dvc", "exp", "run", "-S", "train.learning_rate=0.001", cwd=work, env=env, timeout=1800)
    assert "not promoted because" in out, out
    assert _registry_versions(work) == versions
    sh("git", "checkout", "--", "params.yaml", cwd=work, env=env)

    # 8: a dataset edit: a new clip and its row are fetched again, seen by dvc status, and reach the next run
    first = pd.read_csv(dataset / "labels.csv").iloc[0]
    shutil.copyfile(dataset / first["filename"], dataset / "audio" / "extra_dog.wav")
    with (dataset / "labels.csv").open("a") as rows:
        rows.write(f"audio/extra_dog.wav,{first['label']},{first['fold']}\n")
    sh("make", "data", cwd=work, env=env)
    status = sh("dvc", "status", cwd=work, env=env)
    assert re.search(r"ingest:\s*\n\s*changed deps:\s*\n\s*modified:\s*data/raw", status), status
    sh("dvc", "repro", "validate", cwd=work, env=env, timeout=1800)
    assert len(pd.read_csv(work / "artifacts" / "validated.csv")) == 37
