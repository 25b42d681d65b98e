"""Helpers for tests that run the real DVC on a copy of the project: a small ESC-10 mirror, a git + DVC
workspace with the project's files, and a shell runner that shows DVC's output when a command fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from pipelines import dvc_yaml

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def sh(*args: str, cwd: Path, env: dict, timeout: float = 900) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def small_mirror(esc10_dir: Path, target: Path, per_group: int, group_by: list[str]) -> Path:
    """The first `per_group` clips of every group (e.g. per category, or per category and fold)."""
    meta = pd.read_csv(esc10_dir / "meta.csv").sort_values("filename")
    subset = meta.groupby(group_by).head(per_group)
    (target / "audio").mkdir(parents=True)
    for name in subset["filename"]:
        shutil.copyfile(esc10_dir / "audio" / name, target / "audio" / name)
    subset.to_csv(target / "meta.csv", index=False)
    shutil.copyfile(esc10_dir / "ATTRIBUTION.txt", target / "ATTRIBUTION.txt")
    return target


# What dvc.yaml's code deps name (tests/test_architecture.py checks they cover each step's imports).
CODE_PACKAGES = ("aed", "hil_runner", "components", "pipelines")


def dvc_workspace(
    work: Path,
    repo_dir: Path,
    mirror: Path,
    stages: tuple[str, ...],
    params_update,
) -> dict:
    """A git + DVC repository in `work` with the project's dvc.yaml cut to `stages`, its params.yaml changed by
    `params_update(params)`, the code packages the stages depend on (every stage names its step's code), and
    data.dvc committed from `mirror`. Returns the environment to run commands in."""
    work.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "data.dvc", ".gitignore"):
        shutil.copyfile(repo_dir / name, work / name)
    for package in CODE_PACKAGES:
        shutil.copytree(repo_dir / package, work / package, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((repo_dir / "params.yaml").read_text())
    params_update(params)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    pipeline = yaml.safe_load((work / "dvc.yaml").read_text())
    # the model stages wait for the check that dvc.yaml follows models.names
    keep = set(stages) | ({"model_stages"} if "train" in stages else set())
    pipeline["stages"] = {k: v for k, v in pipeline["stages"].items() if k in keep}
    pipeline = dvc_yaml.apply(pipeline, params)  # its model stages follow the changed params.yaml
    (work / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GX_ANALYTICS_ENABLED": "False",
        "AED_DATA_MIRROR": str(mirror),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    sh("git", "init", "-q", cwd=work, env=env)
    sh("dvc", "init", "-q", cwd=work, env=env)
    sh("aed", "ingest", "--fetch-only", cwd=work, env=env)
    sh("dvc", "commit", "--force", "-q", "data.dvc", cwd=work, env=env)
    return env


def stale_clone(root: Path, repo_dir: Path = REPO) -> Path:
    """A working directory as `make demo` leaves a clone: params.yaml, baselines and outputs of other splits."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(repo_dir / "params.yaml", root / "params.yaml")
    shutil.copytree(repo_dir / "baselines", root / "baselines")
    teacher = root / "models" / "yamnet_1024" / "float"
    teacher.mkdir(parents=True)
    layout = {"model": "yamnet_1024", "splits": {"fold-1": {"train": ["9-x"], "val": [], "test": ["9-y"]}}}
    (teacher / "splits.json").write_text(json.dumps(layout))
    for folder in ("artifacts/patches", "reports", "work/hil", ".cache/aed"):
        (root / folder).mkdir(parents=True)
        (root / folder / "stale.txt").write_text("from another run")
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under root with its size and modification time: equal snapshots, nothing touched."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}
