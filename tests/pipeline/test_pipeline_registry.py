"""Model registry and the promote step, on a local directory and on a real moto S3 server on 127.0.0.1.

The verdicts promote reads are written by the real gate (components.gate.run) on synthetic HIL records."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

import components.promote as promote
from aed.records import sha256_file
from aed.registry import PromoteParams, RegistryError, S3Settings, latest, open_store, parse_s3_uri, publish
from components.gate import run as gate_run
from hil_runner.gate import GateParams
from pipelines.cli import main as aed_main
from tests.gate_records import set_metric, synthetic_record, write


def _model_files(root: Path) -> dict[str, Path]:
    (root / "model").mkdir(parents=True)
    (root / "model" / "model_int8.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(range(200)))
    (root / "records").mkdir()
    (root / "records" / "evaluate.json").write_text(json.dumps({"accuracy": 0.9}))
    (root / "records" / "hil.json").write_text(json.dumps({"source": "virtual", "accuracy": 0.88}))
    return {"model": root / "model" / "model_int8.tflite", "records": root / "records"}


def _gate(path: Path, passed: bool, model: Path | None = None) -> Path:
    """A verdict from the real gate on a HIL record of `model` (default: the model _model_files writes)."""
    model = model or path.parent / "in" / "model" / "model_int8.tflite"
    candidate = synthetic_record(sha256_file(model), str(model))
    record = write(
        path.parent / "hil.json", candidate if passed else set_metric(candidate, "clip_accuracy", 0.5)
    )
    gate_run(GateParams(), record, path, baseline=write(path.parent / "baseline.json", synthetic_record()))
    return path


def _s3(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )


def test_local_publish_is_versioned_by_content_and_idempotent(tmp_path: Path) -> None:
    artifacts = _model_files(tmp_path / "in")
    store = open_store(tmp_path / "registry")
    first = publish(store, "yamnet_256", artifacts, {"note": "x"})
    again = publish(store, "yamnet_256", artifacts, {"note": "x"})
    assert first.version == again.version
    copied = tmp_path / "registry" / "yamnet_256" / first.version / "model" / "model_int8.tflite"
    assert sha256_file(copied) == sha256_file(artifacts["model"])
    manifest = json.loads(
        (tmp_path / "registry" / "yamnet_256" / first.version / "manifest.json").read_text()
    )
    assert {f["key"] for f in manifest["files"]} == {
        "model/model_int8.tflite",
        "records/evaluate.json",
        "records/hil.json",
    }
    assert latest(store, "yamnet_256")["version"] == first.version
    (artifacts["records"] / "evaluate.json").write_text(json.dumps({"accuracy": 0.95}))
    assert publish(store, "yamnet_256", artifacts, {}).version != first.version


def test_parse_s3_uri_and_bad_locations() -> None:
    assert str(parse_s3_uri("s3://bucket/a/b/")) == "s3://bucket/a/b"
    assert parse_s3_uri("s3://bucket").prefix == ""
    with pytest.raises(RegistryError, match="missing bucket"):
        parse_s3_uri("s3:///x")
    with pytest.raises(RegistryError, match="unsupported registry location"):
        open_store("gs://bucket/x")


@pytest.mark.slow
def test_promote_to_s3_copies_model_and_records(s3_env: str, tmp_path: Path) -> None:
    _s3(s3_env).create_bucket(Bucket="models")
    artifacts = _model_files(tmp_path / "in")
    params = PromoteParams(registry="s3://models/aed", endpoint_url=s3_env)
    result = promote.run(
        params, "yamnet_256", artifacts, _gate(tmp_path / "gate.json", True), tmp_path / "p.json"
    )
    assert result["promoted"] is True
    keys = {o["Key"] for o in _s3(s3_env).list_objects_v2(Bucket="models", Prefix="aed/")["Contents"]}
    version = result["version"]
    assert {
        f"aed/yamnet_256/{version}/model/model_int8.tflite",
        f"aed/yamnet_256/{version}/records/hil.json",
        f"aed/yamnet_256/{version}/gate/gate.json",
        f"aed/yamnet_256/{version}/manifest.json",
        "aed/yamnet_256/latest.json",
    } <= keys
    body = _s3(s3_env).get_object(Bucket="models", Key=f"aed/yamnet_256/{version}/model/model_int8.tflite")
    assert body["Body"].read() == artifacts["model"].read_bytes()
    record = json.loads((tmp_path / "p.json").read_text())
    assert record["promoted"] is True and record["manifest"].startswith("s3://models/aed/yamnet_256/")


@pytest.mark.slow
def test_promote_to_missing_bucket_names_the_bucket(s3_env: str, tmp_path: Path, capsys) -> None:
    artifacts = _model_files(tmp_path / "in")
    gate = _gate(tmp_path / "gate.json", True)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(f"promote:\n  registry: s3://no-such-bucket/x\n  endpoint_url: {s3_env}\n")
    code = aed_main(
        [
            "promote",
            "--params",
            str(params_file),
            "--model-name",
            "yamnet_256",
            "--gate",
            str(gate),
            "--artifact",
            f"model={artifacts['model']}",
            "--out",
            str(tmp_path / "p.json"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "s3://no-such-bucket: bucket does not exist" in err and "Traceback" not in err


def test_unreachable_s3_endpoint_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with pytest.raises(RegistryError, match="s3://models: S3 request to http://127.0.0.1:9 failed"):
        open_store("s3://models/x", S3Settings(endpoint_url="http://127.0.0.1:9", timeout_s=2))


def test_failed_gate_promotes_nothing(tmp_path: Path) -> None:
    artifacts = _model_files(tmp_path / "in")
    params = PromoteParams(registry=str(tmp_path / "registry"))
    result = promote.run(
        params, "yamnet_256", artifacts, _gate(tmp_path / "gate.json", False), tmp_path / "p.json"
    )
    assert result["promoted"] is False and result["verdict"] == "regression"
    assert not (tmp_path / "registry").exists()
    record = json.loads((tmp_path / "p.json").read_text())
    assert record["promoted"] is False and record["reasons"] == ["clip accuracy: fail"]


def test_gate_record_without_verdict_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "gate.json"
    bad.write_text(json.dumps({"accuracy": 0.9}))
    with pytest.raises(ValueError, match="gate.json: kind: missing"):
        promote.gate_verdict(bad)
    for legacy in ({"verdict": "PASS"}, {"passed": True}, {"promotable": True}, {"verdict": "pass"}):
        (tmp_path / "verdict.json").write_text(json.dumps(legacy))
        with pytest.raises(ValueError, match="verdict.json: kind: missing"):
            promote.gate_verdict(tmp_path / "verdict.json")
    # the gate's verdict file: undecidable (no baseline) is not promotable
    record = write(tmp_path / "hil.json", synthetic_record())
    gate_run(GateParams(), record, tmp_path / "undecidable.json", baseline=tmp_path / "b.json")
    assert promote.gate_verdict(tmp_path / "undecidable.json") == (
        False,
        [f"baseline present: undecidable ({tmp_path / 'b.json'}: not found)"],
    )


def test_promote_params_are_validated(tmp_path: Path, capsys) -> None:
    params_file = tmp_path / "params.yaml"
    params_file.write_text("promote:\n  timeout_s: 0\n")
    gate = tmp_path / "gate.json"
    code = aed_main(
        ["promote", "--params", str(params_file), "--model-name", "m", "--gate", str(gate)]
        + ["--artifact", f"x={gate}", "--out", str(tmp_path / "p.json")]
    )
    assert code == 2
    assert "promote.timeout_s: 0.0 is out of range" in capsys.readouterr().err
