"""End to end with the real DVC: repro on a 20-clip ESC-10 mirror, idempotence, params-driven partial re-runs,
and push/pull through a real S3 server (moto) on 127.0.0.1."""

import shutil

import pytest
import yaml

from tests.dvc_workspace import dvc_workspace, sh, small_mirror

pytestmark = pytest.mark.slow


@pytest.fixture
def workspace(tmp_path, repo_dir, esc10_dir):
    def update(params: dict) -> None:
        params["validate"]["min_clips_per_class"] = 1

    work = tmp_path / "work"
    mirror = small_mirror(esc10_dir, tmp_path / "mirror", 2, ["category"])
    # Only the data stages: the later stages (models, HIL) are tested in their own areas.
    env = dvc_workspace(work, repo_dir, mirror, ("ingest", "validate", "patch"), update)
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
