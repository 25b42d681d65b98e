"""`aed pipeline submit | schedule` against a loopback KFP API server that records what kfp.Client sends."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.config import Config

from pipelines.cli import main as aed_main
from pipelines.remote import SubmitError, kfp_cron

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["pipeline"]["experiment"] = "nightly-esc10"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _aed(*args: str) -> int:
    return aed_main(["pipeline", *args])


def test_submit_uploads_once_then_reuses_the_version(
    kfp_server, params_file: Path, tmp_path: Path, capsys
) -> None:
    assert _aed("submit", "--params", str(params_file), "--host", kfp_server.url, "--run-name", "first") == 0
    out = capsys.readouterr().out
    assert "run run-1" in out and "(uploaded)" in out

    paths = [(r.method, r.path) for r in kfp_server.requests]
    assert ("GET", "/apis/v2beta1/healthz") in paths
    assert ("POST", "/apis/v2beta1/pipelines/upload") in paths
    assert ("POST", "/apis/v2beta1/experiments") in paths
    assert paths[-1] == ("POST", "/apis/v2beta1/runs")

    # the uploaded spec is the pipeline compiled from these params
    upload = kfp_server.calls("POST", "/apis/v2beta1/pipelines/upload")[0]
    assert upload.query["name"] == ["aed-pipeline"]
    spec = next(yaml.safe_load_all(upload.uploaded_file()))
    assert spec["pipelineInfo"]["name"] == "aed-pipeline"
    assert "train-yamnet-256" in spec["root"]["dag"]["tasks"]
    default = json.loads(spec["root"]["inputDefinitions"]["parameters"]["params"]["defaultValue"])
    assert default["pipeline"]["experiment"] == "nightly-esc10"

    experiment = kfp_server.calls("POST", "/apis/v2beta1/experiments")[0].json()
    assert experiment["display_name"] == "nightly-esc10"

    run = kfp_server.runs[0]
    assert run["display_name"] == "first"
    assert run["experiment_id"] == "exp-1"
    reference = run["pipeline_version_reference"]
    assert reference["pipeline_id"] == "pl-1"
    assert reference["pipeline_version_id"] in {v["pipeline_version_id"] for v in kfp_server.versions["pl-1"]}
    sent = json.loads(run["runtime_config"]["parameters"]["params"])
    # the params file's values, with its relative paths resolved in the images' project folder (no task reads
    # its working directory)
    written = yaml.safe_load(params_file.read_text())
    assert sent["gate"]["baseline"] == "/opt/aed/" + written["gate"]["baseline"]
    assert sent["promote"]["registry"] == "/opt/aed/" + written["promote"]["registry"]
    for name in ("gate", "promote", "hil", "ingest", "models"):
        sent.pop(name), written.pop(name)
    assert sent == written

    # same pipeline again: nothing uploaded, the version and the experiment are reused
    uploads_before = len(kfp_server.calls("POST", "/apis/v2beta1/pipelines/upload"))
    versions_before = len(kfp_server.calls("POST", "/apis/v2beta1/pipelines/upload_version"))
    assert _aed("submit", "--params", str(params_file), "--host", kfp_server.url) == 0
    assert "(reused)" in capsys.readouterr().out
    assert len(kfp_server.calls("POST", "/apis/v2beta1/pipelines/upload")) == uploads_before
    assert len(kfp_server.calls("POST", "/apis/v2beta1/pipelines/upload_version")) == versions_before
    assert len(kfp_server.calls("POST", "/apis/v2beta1/experiments")) == 1
    assert kfp_server.runs[1]["pipeline_version_reference"] == reference

    # a changed pipeline (other params) becomes a new version of the same pipeline
    assert (
        _aed("submit", "--params", str(params_file), "--host", kfp_server.url, "--set", "patch.jobs=1") == 0
    )
    new_version = kfp_server.calls("POST", "/apis/v2beta1/pipelines/upload_version")[-1]
    assert new_version.query["pipelineid"] == ["pl-1"]
    assert json.loads(kfp_server.runs[2]["runtime_config"]["parameters"]["params"])["patch"]["jobs"] == 1


def test_schedule_creates_a_recurring_run(kfp_server, params_file: Path, capsys) -> None:
    code = _aed("schedule", "--params", str(params_file), "--host", kfp_server.url, "--cron", "0 3 * * *")
    assert code == 0
    assert "recurring run job-1" in capsys.readouterr().out
    job = kfp_server.recurring_runs[0]
    assert job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert job["mode"] == "ENABLE"
    assert int(job["max_concurrency"]) == 1 and job["no_catchup"] is True
    assert job["experiment_id"] == "exp-1"
    assert (
        json.loads(job["runtime_config"]["parameters"]["params"])["pipeline"]["experiment"] == "nightly-esc10"
    )
    assert not kfp_server.runs


def test_schedule_defaults_to_the_params_cron(kfp_server, params_file: Path) -> None:
    params = yaml.safe_load(params_file.read_text())
    params["pipeline"]["schedule"] = "30 1 * * 1-5"
    params_file.write_text(yaml.safe_dump(params))
    assert _aed("schedule", "--params", str(params_file), "--host", kfp_server.url) == 0
    assert kfp_server.recurring_runs[0]["trigger"]["cron_schedule"]["cron"] == "0 30 1 * * 1-5"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_host_is_one_clear_line(params_file: Path, capsys) -> None:
    start = time.monotonic()
    code = _aed("submit", "--params", str(params_file), "--host", f"http://127.0.0.1:{_closed_port()}")
    captured = capsys.readouterr()
    assert code == 2
    assert "cannot reach KFP host http://127.0.0.1:" in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert len(captured.err.strip().splitlines()) == 1
    assert time.monotonic() - start < 30  # no kfp.Client retry loop (5 x 5 s)


def test_stalled_host_times_out(params_file: Path, capsys) -> None:
    """A host that accepts the connection but never answers: the request timeout applies, no hang."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        start = time.monotonic()
        args = ["--params", str(params_file), "--host", f"http://127.0.0.1:{port}"]
        assert _aed("submit", *args, "--set", "pipeline.request_timeout_s=1") == 2
    err = capsys.readouterr().err
    assert f"cannot reach KFP host http://127.0.0.1:{port}" in err and "timed out" in err
    assert time.monotonic() - start < 30


def test_host_without_kfp_api_is_one_clear_line(kfp_server, params_file: Path, capsys) -> None:
    original = kfp_server.handle
    kfp_server.handle = lambda request: (404, {}) if request.path.endswith("/healthz") else original(request)
    start = time.monotonic()
    assert _aed("submit", "--params", str(params_file), "--host", kfp_server.url) == 2
    err = capsys.readouterr().err
    assert f"KFP host {kfp_server.url} answered HTTP 404 on /apis/v2beta1/healthz" in err
    assert "Traceback" not in err and time.monotonic() - start < 20


def test_server_error_is_reported_without_traceback(kfp_server, params_file: Path, capsys) -> None:
    original = kfp_server.handle

    def failing(request):
        if request.path.endswith("/runs"):
            kfp_server.requests.append(request)
            return 500, {"error": "database unavailable", "message": "database unavailable"}
        return original(request)

    kfp_server.handle = failing
    assert _aed("submit", "--params", str(params_file), "--host", kfp_server.url) == 2
    err = capsys.readouterr().err
    assert "HTTP 500" in err and "database unavailable" in err and "Traceback" not in err


def test_missing_host_and_bad_cron_and_bad_params(params_file: Path, capsys) -> None:
    assert _aed("submit", "--params", str(params_file)) == 2
    assert "no KFP host: pass --host URL or set pipeline.host" in capsys.readouterr().err
    assert _aed("schedule", "--params", str(params_file), "--host", "http://x", "--cron", "every day") == 2
    assert "expected 5 fields" in capsys.readouterr().err
    assert (
        _aed("submit", "--params", str(params_file), "--host", "http://x", "--set", "patch.n_fft=many") == 2
    )
    assert "patch.n_fft: expected an integer, got 'many'" in capsys.readouterr().err


def test_kfp_cron() -> None:
    assert kfp_cron("0 3 * * *") == "0 0 3 * * *"
    assert kfp_cron("0 0 3 * * *") == "0 0 3 * * *"
    with pytest.raises(SubmitError):
        kfp_cron("0 3 * *")
    with pytest.raises(SubmitError):
        kfp_cron("0 3 * * $(rm)")


@pytest.mark.slow
def test_s3_pipeline_root_must_exist(kfp_server, s3_env: str, params_file: Path, capsys) -> None:
    boto3.client(
        "s3", endpoint_url=s3_env, region_name="us-east-1", config=Config(s3={"addressing_style": "path"})
    ).create_bucket(Bucket="kfp-artifacts")
    args = [
        "--params",
        str(params_file),
        "--host",
        kfp_server.url,
        "--set",
        f"pipeline.s3_endpoint_url={s3_env}",
    ]
    assert _aed("submit", *args, "--pipeline-root", "s3://missing-bucket/kfp") == 2
    assert "pipeline root s3://missing-bucket/kfp: s3://missing-bucket: bucket does not exist" in (
        capsys.readouterr().err
    )
    assert not kfp_server.calls("POST")
    assert _aed("submit", *args, "--pipeline-root", "s3://kfp-artifacts/kfp") == 0
    assert kfp_server.runs[0]["runtime_config"]["pipeline_root"] == "s3://kfp-artifacts/kfp"
