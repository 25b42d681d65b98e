"""End to end with the real DVC: repro on a 20-clip ESC-10 mirror, idempotence, params-driven partial re-runs,
and push/pull through a real S3 server (moto) on 127.0.0.1."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def sh(*args: str, cwd: Path, env: dict) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def mini_mirror(esc10_dir: Path, target: Path) -> Path:
    meta = pd.read_csv(esc10_dir / "meta.csv")
    subset = meta.groupby("category").head(2)
    (target / "audio").mkdir(parents=True)
    for name in subset["filename"]:
        shutil.copyfile(esc10_dir / "audio" / name, target / "audio" / name)
    subset.to_csv(target / "meta.csv", index=False)
    shutil.copyfile(esc10_dir / "ATTRIBUTION.txt", target / "ATTRIBUTION.txt")
    return target


@pytest.fixture
def workspace(tmp_path, repo_dir, esc10_dir):
    work = tmp_path / "work"
    work.mkdir()
    for name in ("dvc.yaml", "data.dvc", ".gitignore"):
        shutil.copyfile(repo_dir / name, work / name)
    shutil.copytree(repo_dir / "aed", work / "aed", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((repo_dir / "params.yaml").read_text())
    params["validate"]["min_clips_per_class"] = 1
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # Only the data stages: the later stages (models, HIL) are tested in their own areas.
    stages = yaml.safe_load((work / "dvc.yaml").read_text())
    stages["stages"] = {k: v for k, v in stages["stages"].items() if k in ("ingest", "validate", "patch")}
    (work / "dvc.yaml").write_text(yaml.safe_dump(stages, sort_keys=False))
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GX_ANALYTICS_ENABLED": "False",
        "AED_DATA_MIRROR": str(mini_mirror(esc10_dir, tmp_path / "mirror")),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    sh("git", "init", "-q", cwd=work, env=env)
    sh("dvc", "init", "-q", cwd=work, env=env)
    sh("aed", "ingest", "--fetch-only", cwd=work, env=env)
    sh("dvc", "commit", "--force", "-q", "data.dvc", cwd=work, env=env)
    return work, env


def test_repro_is_idempotent_and_reruns_only_what_a_param_change_touches(workspace):
    work, env = workspace
    first = sh("dvc", "repro", cwd=work, env=env)
    for stage in ("ingest", "validate", "patch"):
        assert f"Running stage '{stage}'" in first
    patch = yaml.safe_load((work / "reports" / "patch.json").read_text())
    assert patch["n_clips"] == 20 and patch["n_patches"] >= 20

    second = sh("dvc", "repro", cwd=work, env=env)
    assert "Running stage" not in second

    params = yaml.safe_load((work / "params.yaml").read_text())
    params["patch"]["patch_step"] = 48
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = sh("dvc", "repro", cwd=work, env=env)
    assert "Running stage 'patch'" in third
    assert "Running stage 'ingest'" not in third and "Running stage 'validate'" not in third
    assert yaml.safe_load((work / "reports" / "patch.json").read_text())["n_patches"] > patch["n_patches"]


def test_push_and_pull_through_a_real_s3_server_are_byte_identical(workspace, s3_env):
    import boto3

    work, env = workspace
    s3_server = s3_env
    env = {**env, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket="dvc-bucket")
    sh("dvc", "remote", "add", "-d", "s3remote", "s3://dvc-bucket/store", cwd=work, env=env)
    sh("dvc", "remote", "modify", "s3remote", "endpointurl", s3_server, cwd=work, env=env)
    sh("dvc", "remote", "modify", "s3remote", "region", "us-east-1", cwd=work, env=env)
    sh("dvc", "repro", cwd=work, env=env)
    originals = {p.relative_to(work): p.read_bytes() for p in (work / "artifacts" / "patches").iterdir()}
    originals.update(
        {p.relative_to(work): p.read_bytes() for p in (work / "data" / "raw" / "audio").iterdir()}
    )
    sh("dvc", "push", cwd=work, env=env)

    shutil.rmtree(work / ".dvc" / "cache")
    shutil.rmtree(work / "artifacts" / "patches")
    shutil.rmtree(work / "data" / "raw")
    sh("dvc", "pull", cwd=work, env=env)
    for relative, content in originals.items():
        assert (work / relative).read_bytes() == content, relative
