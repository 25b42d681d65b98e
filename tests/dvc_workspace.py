"""Helpers for tests that run the real DVC on a copy of the project: a small ESC-10 mirror, a git + DVC
workspace with the project's files, and a shell runner that shows DVC's output when a command fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

BIN = Path(sys.executable).parent


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


def dvc_workspace(
    work: Path,
    repo_dir: Path,
    mirror: Path,
    stages: tuple[str, ...],
    params_update,
    packages: tuple[str, ...],
) -> dict:
    """A git + DVC repository in `work` with the project's dvc.yaml cut to `stages`, its params.yaml changed by
    `params_update(params)`, the source packages the stages depend on, and data.dvc committed from `mirror`.
    Returns the environment to run commands in."""
    work.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "data.dvc", ".gitignore"):
        shutil.copyfile(repo_dir / name, work / name)
    for package in packages:
        shutil.copytree(repo_dir / package, work / package, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((repo_dir / "params.yaml").read_text())
    params_update(params)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    pipeline = yaml.safe_load((work / "dvc.yaml").read_text())
    pipeline["stages"] = {k: v for k, v in pipeline["stages"].items() if k in stages}
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
