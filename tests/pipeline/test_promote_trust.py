"""Promote publishes only the model a passing verdict judged, and only inside the registry root.

Corpora: forged and malformed verdicts, verdicts of another model or of a record changed since, a stale verdict
after a gate that failed or crashed, and registry names and keys that try to leave the root (local directory and
a real moto S3 server on 127.0.0.1). Each refusal: exit 2, one line, nothing published, no promotion record."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from aed.record_schema import RecordError
from aed.records import sha256_file
from aed.registry import (
    LocalStore,
    RegistryPathError,
    S3Settings,
    check_key,
    open_store,
    parse_s3_uri,
    publish,
)
from components.gate import run as gate_run
from hil_runner.gate import GateParams
from pipelines.cli import main as aed_main
from tests.gate_records import set_metric, synthetic_record, write
from tests.kfp_artifacts import FakeArtifact


@pytest.fixture
def promotion(tmp_path: Path) -> dict[str, Path]:
    """An int8 model, its HIL record, a baseline, and the real gate's passing verdict on them."""
    model = tmp_path / "in" / "model_int8.tflite"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(range(200)))
    record = write(tmp_path / "in" / "hil.json", synthetic_record(sha256_file(model), str(model)))
    baseline = write(tmp_path / "in" / "baseline.json", synthetic_record())
    verdict = tmp_path / "in" / "gate.json"
    assert gate_run(GateParams(), record, verdict, baseline=baseline)["passed"]
    return {"model": model, "record": record, "baseline": baseline, "verdict": verdict,
            "registry": tmp_path / "registry", "out": tmp_path / "promote.json", "params": _params(tmp_path)}  # fmt: skip


def _params(tmp_path: Path) -> Path:
    return write(tmp_path / "params.yaml", f"promote:\n  registry: {tmp_path / 'registry'}\n")


def _promote(p: dict[str, Path], *, model_name: str = "yamnet_256", artifacts: list[str] | None = None,
             gate: Path | None = None, extra: tuple[str, ...] = ()) -> int:  # fmt: skip
    artifacts = artifacts if artifacts is not None else [f"model={p['model']}", f"hil={p['record']}"]
    args = ["promote", "--params", str(p["params"]), f"--model-name={model_name}", "--gate", str(gate or p["verdict"]),
            "--out", str(p["out"]), *extra]  # fmt: skip
    args += [f"--artifact={artifact}" for artifact in artifacts]
    return aed_main(args)


def _refused(capsys, code: int, p: dict[str, Path]) -> str:
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert not p["registry"].exists() or not any(p["registry"].rglob("*.tflite")), "something was published"
    assert not p["out"].exists()
    return lines[0]


def test_the_real_verdict_promotes(promotion, capsys) -> None:
    assert _promote(promotion) == 0, capsys.readouterr().err
    latest = json.loads((promotion["registry"] / "yamnet_256" / "latest.json").read_text())
    manifest = json.loads((promotion["registry"] / "yamnet_256" / latest["manifest"]).read_text())
    assert manifest["model_sha256"] == sha256_file(promotion["model"])
    assert manifest["hil_record_sha256"] == sha256_file(promotion["record"])


def _edit(change: Callable[[dict], None]) -> Callable[[dict], dict]:
    def apply(verdict: dict) -> dict:
        verdict = copy.deepcopy(verdict)
        change(verdict)
        return verdict

    return apply


# (case, forged verdict from the real one, what the one-line refusal says)
FORGED = [
    ("passed true alone", lambda v: {"passed": True}, "kind: missing"),
    ("promotable true alone", lambda v: {"promotable": True}, "kind: missing"),
    ("verdict PASS alone", lambda v: {"verdict": "PASS"}, "kind: missing"),
    ("kind and verdict only", lambda v: {"kind": "gate-verdict", "verdict": "pass"}, "exit_code: missing"),
    ("a list", lambda v: [v], "top level: expected an object"),
    ("null", lambda v: None, "top level: expected an object"),
    ("model missing", _edit(lambda v: v.pop("model")), "model: missing"),
    ("model sha null", _edit(lambda v: v["model"].update(sha256=None)), "must name its model"),
    ("model sha short", _edit(lambda v: v["model"].update(sha256="abc")), "model.sha256"),
    ("record missing", _edit(lambda v: v.pop("record")), "record: missing"),
    ("record sha null", _edit(lambda v: v["record"].update(sha256=None)), "must name its record"),
    (
        "baseline null",
        _edit(lambda v: v.update(baseline={"path": None, "sha256": None})),
        "must name its baseline",
    ),
    (
        "promotable but regression",
        _edit(lambda v: v.update(verdict="regression", exit_code=1)),
        "promotable True does not match verdict 'regression'",
    ),
    (
        "exit code 0 for undecidable",
        _edit(lambda v: v.update(verdict="undecidable", promotable=False)),
        "exit_code 0 does not match verdict 'undecidable'",
    ),
    ("pass with exit 2", _edit(lambda v: v.update(exit_code=2)), "exit_code 2 does not match verdict 'pass'"),
    (
        "pass with a failed check",
        _edit(lambda v: v["checks"][0].update(status="fail")),
        "failed or missing checks",
    ),
    ("pass with no checks", _edit(lambda v: v.update(checks=[])), "failed or missing checks"),
    ("pass with reasons", _edit(lambda v: v.update(reasons=["x"])), "failed or missing checks"),
    ("checks not a list", _edit(lambda v: v.update(checks={"a": 1})), "checks: expected a list"),
    ("unknown verdict", _edit(lambda v: v.update(verdict="ok")), "verdict: expected one of"),
    ("promotable string", _edit(lambda v: v.update(promotable="true")), "promotable: expected true or false"),
    ("kind other", _edit(lambda v: v.update(kind="promotion")), "kind: expected one of ['gate-verdict']"),
    ("other model", _edit(lambda v: v["model"].update(sha256="0" * 64)), "is not the model the verdict"),
    (
        "other record",
        _edit(lambda v: v["record"].update(sha256="1" * 64)),
        "changed since the gate judged it",
    ),
    ("record path elsewhere", _edit(lambda v: v["record"].update(path="/nonexistent/hil.json")), "not found"),
]


@pytest.mark.parametrize(("case", "forge", "message"), FORGED, ids=[case[0] for case in FORGED])
def test_forged_verdicts_publish_nothing(promotion, capsys, case, forge, message) -> None:
    real = json.loads(promotion["verdict"].read_text())
    forged = write(promotion["verdict"].parent / "forged.json", json.dumps(forge(real)))
    write(promotion["out"], {"promoted": True})  # a stale promotion record must not survive a refusal
    # the record path check applies when no record is given: the verdict names it
    line = _refused(
        capsys, _promote(promotion, gate=forged, artifacts=[f"model={promotion['model']}"]), promotion
    )
    assert line.startswith("aed promote: error: ") and message in line


UNREADABLE = [("empty", b""), ("truncated", b'{"kind": "gate-verdict", '), ("binary", b"\xff\x00"),
              ("nested", b"[" * 100_000)]  # fmt: skip


@pytest.mark.parametrize(("case", "content"), UNREADABLE, ids=[case[0] for case in UNREADABLE])
def test_unreadable_verdicts_publish_nothing(promotion, capsys, case, content) -> None:
    promotion["verdict"].write_bytes(content)
    line = _refused(capsys, _promote(promotion), promotion)
    assert "gate.json: gate verdict" in line


def test_missing_verdict_or_a_directory_publishes_nothing(promotion, capsys, tmp_path) -> None:
    line = _refused(capsys, _promote(promotion, gate=tmp_path / "none.json"), promotion)
    assert "none.json: gate verdict not found" in line
    line = _refused(capsys, _promote(promotion, gate=tmp_path), promotion)
    assert "gate verdict not found (a directory)" in line


def test_the_verdict_of_another_model_publishes_nothing(promotion, capsys) -> None:
    """A stale verdict: the gate passed for yesterday's model; today's model file is another one."""
    promotion["model"].write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(range(100)))
    line = _refused(capsys, _promote(promotion), promotion)
    assert "model_int8.tflite: sha256" in line and "is not the model the verdict" in line


def test_a_record_changed_after_the_gate_publishes_nothing(promotion, capsys) -> None:
    edited = json.loads(promotion["record"].read_text())
    write(promotion["record"], set_metric(edited, "clip_accuracy", 0.99))
    line = _refused(capsys, _promote(promotion), promotion)
    assert "hil.json: changed since the gate judged it" in line


def test_a_record_of_another_model_publishes_nothing(promotion, capsys, tmp_path) -> None:
    other = write(tmp_path / "other-hil.json", synthetic_record())  # valid record, another model
    line = _refused(capsys, _promote(promotion, extra=("--record", str(other))), promotion)
    assert "other-hil.json: changed since the gate judged it" in line


def test_model_artifact_is_required_and_must_be_the_file(promotion, capsys) -> None:
    line = _refused(capsys, _promote(promotion, artifacts=[f"hil={promotion['record']}"]), promotion)
    assert "--artifact model=FILE" in line
    line = _refused(capsys, _promote(promotion, artifacts=[f"model={promotion['model'].parent}"]), promotion)
    assert "--artifact model=FILE" in line


def test_a_verdict_that_did_not_pass_is_refused_with_the_gate_exit_code(promotion, capsys) -> None:
    write(promotion["record"], set_metric(json.loads(promotion["record"].read_text()), "clip_accuracy", 0.5))
    assert (
        gate_run(GateParams(), promotion["record"], promotion["verdict"], baseline=promotion["baseline"])[
            "verdict"
        ]
        == "regression"
    )
    code = _promote(promotion)
    captured = capsys.readouterr()
    assert code == 1 and len(captured.err.strip().splitlines()) == 1  # 1: a regression, as the gate says
    assert "verdict 'regression', nothing promoted (clip accuracy: fail)" in captured.err
    assert not promotion["registry"].exists()
    assert json.loads(promotion["out"].read_text())["promoted"] is False  # the outcome is recorded


def test_a_gate_that_crashes_after_a_pass_leaves_nothing_to_promote(promotion, capsys) -> None:
    write(promotion["record"], {**json.loads(promotion["record"].read_text()), "key": None})
    with pytest.raises(RecordError):
        gate_run(GateParams(), promotion["record"], promotion["verdict"], baseline=promotion["baseline"])
    line = _refused(capsys, _promote(promotion), promotion)
    assert "gate.json: gate verdict not found" in line


BAD_NAMES = ["..", ".", "../x", "../../etc", "/abs", "a/b", "a\\b", "", "-rf", ".hidden", "x\x00y", "a" * 200,
             "~", "sp ace"]  # fmt: skip


@pytest.mark.parametrize("name", BAD_NAMES)
def test_model_and_artifact_names_stay_inside_the_local_registry(promotion, capsys, tmp_path, name) -> None:
    before = sorted(p for p in tmp_path.rglob("*"))
    line = _refused(capsys, _promote(promotion, model_name=name), promotion)
    assert "invalid model name" in line
    artifacts = [f"model={promotion['model']}", f"{name}={promotion['record']}"]
    if name:
        line = _refused(capsys, _promote(promotion, artifacts=artifacts), promotion)
        assert "invalid artifact name" in line
    else:  # argparse refuses "=PATH" itself (usage and exit 2)
        with pytest.raises(SystemExit) as raised:
            _promote(promotion, artifacts=artifacts)
        assert raised.value.code == 2 and "expected NAME=PATH" in capsys.readouterr().err
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_reserved_artifact_names_are_refused(promotion, capsys) -> None:
    for name, message in (("gate", "reserved for the gate verdict"), ("manifest.json", "reserved")):
        artifacts = [f"model={promotion['model']}", f"{name}={promotion['record']}"]
        assert message in _refused(capsys, _promote(promotion, artifacts=artifacts), promotion)


def _accesses(store, source: Path, key: str) -> list[Callable[[], object]]:
    return [
        lambda: store.put_file(source, key),
        lambda: store.put_text("x", key),
        lambda: store.get_text(key),
    ]


BAD_KEYS = ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a/./b", "a\\..\\b", "", "a/", "x\x00"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_local_store_keys_cannot_leave_the_root(tmp_path, key) -> None:
    store = LocalStore(tmp_path / "registry")
    source = write(tmp_path / "file.txt", "x")
    for action in _accesses(store, source, key):
        with pytest.raises(RegistryPathError):
            action()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "registry"]


def test_local_store_refuses_a_symlink_out_of_the_root(tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "registry").mkdir()
    os.symlink(outside, tmp_path / "registry" / "yamnet_256")
    store = LocalStore(tmp_path / "registry")
    with pytest.raises(RegistryPathError, match="resolves outside the registry root"):
        store.put_text("x", "yamnet_256/latest.json")
    with pytest.raises(RegistryPathError):
        publish(store, "yamnet_256", {"model": write(tmp_path / "m.tflite", "m")}, {})
    assert list(outside.iterdir()) == []


def test_publish_checks_names_before_copying_anything(tmp_path) -> None:
    store = open_store(tmp_path / "registry")
    model = write(tmp_path / "m.tflite", "m")
    for model_name, artifacts in (
        ("..", {"model": model}),
        ("ok", {"../../x": model}),
        ("a/b", {"model": model}),
    ):
        with pytest.raises(RegistryPathError):
            publish(store, model_name, artifacts, {})
    assert list((tmp_path / "registry").iterdir()) == []
    assert check_key("yamnet_256/abc/model/m.tflite") == "yamnet_256/abc/model/m.tflite"


@pytest.mark.parametrize("uri", ["s3://bucket/../x", "s3://bucket/a/../../b", "s3://bucket/a/./b",
                                 "s3://bucket/a//b", "s3://../x", "s3://bu cket/x"])  # fmt: skip
def test_s3_uris_with_escapes_are_refused(uri) -> None:
    with pytest.raises(RegistryPathError):
        parse_s3_uri(uri)


def _s3(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}))  # fmt: skip


@pytest.mark.slow
def test_s3_store_keys_and_names_cannot_leave_the_prefix(s3_env: str, tmp_path: Path) -> None:
    bucket = "prefix-confined"  # its own bucket: the moto server is shared by the whole session
    _s3(s3_env).create_bucket(Bucket=bucket)
    store = open_store(f"s3://{bucket}/aed", S3Settings(endpoint_url=s3_env))
    source = write(tmp_path / "file.txt", "x")
    for key in BAD_KEYS:
        for action in _accesses(store, source, key):
            with pytest.raises(RegistryPathError):
                action()
    for name in BAD_NAMES:
        with pytest.raises(RegistryPathError):
            publish(store, name, {"model": source}, {})
        with pytest.raises(RegistryPathError):
            publish(store, "yamnet_256", {name: source}, {})
    assert "Contents" not in _s3(s3_env).list_objects_v2(Bucket=bucket)
    published = publish(store, "yamnet_256", {"model": source}, {})
    keys = {o["Key"] for o in _s3(s3_env).list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys and all(key.startswith("aed/yamnet_256/") for key in keys), keys
    assert published.manifest_uri.startswith(f"s3://{bucket}/aed/yamnet_256/")


@pytest.mark.slow
def test_promote_to_s3_refuses_escaping_names(s3_env: str, promotion, capsys) -> None:
    _s3(s3_env).create_bucket(Bucket="reg")
    write(promotion["params"], f"promote:\n  registry: s3://reg/p\n  endpoint_url: {s3_env}\n")
    for model_name, artifacts in (
        ("..", None),
        ("ok", [f"model={promotion['model']}", f"../../x={promotion['record']}"]),
    ):
        code = _promote(promotion, model_name=model_name, artifacts=artifacts)
        captured = capsys.readouterr()
        assert code == 2 and "invalid" in captured.err and len(captured.err.strip().splitlines()) == 1
    assert "Contents" not in _s3(s3_env).list_objects_v2(Bucket="reg")
    assert _promote(promotion) == 0, capsys.readouterr().err
    keys = {o["Key"] for o in _s3(s3_env).list_objects_v2(Bucket="reg")["Contents"]}
    assert all(key.startswith("p/yamnet_256/") for key in keys)


def test_kfp_gate_and_promote_task_bodies_promote_the_judged_model(tmp_path) -> None:
    """The KFP path: the gate task's verdict, copied by the promote task, with the HIL record as its input."""
    from components.gate.task import gate
    from components.promote.task import promote

    int8 = tmp_path / "quantized" / "final" / "model_int8.tflite"
    int8.parent.mkdir(parents=True)
    int8.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(range(50)))
    (tmp_path / "model" / "final").mkdir(parents=True)
    (tmp_path / "model" / "final" / "model.keras").write_bytes(b"keras")
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "user_mel_tables.c").write_text("/* tables */\n")
    (tmp_path / "generated").mkdir()
    board = write(tmp_path / "board" / "metrics", synthetic_record(sha256_file(int8), str(int8)))
    evaluation = write(tmp_path / "evaluation", {"accuracy": 0.9})
    footprint = write(tmp_path / "footprint", {"flash": 1})
    baseline = write(tmp_path / "baselines" / "hil-yamnet_256-b-u585i-iot02a.json", synthetic_record())
    params = json.dumps({"gate": {"baseline": str(baseline.parent / "hil-{model_name}-{profile}.json")},
                         "promote": {"registry": str(tmp_path / "registry")}})  # fmt: skip
    verdict = FakeArtifact(tmp_path / "verdict")
    passed = gate(params, "yamnet_256", FakeArtifact(evaluation), FakeArtifact(footprint), FakeArtifact(board),
                        verdict, FakeArtifact(tmp_path / "table.md"))  # fmt: skip
    assert passed is True
    promotion = FakeArtifact(tmp_path / "promotion.json")
    promote(params, "yamnet_256", FakeArtifact(tmp_path / "model"), FakeArtifact(tmp_path / "quantized"),
                  FakeArtifact(tmp_path / "generated"), FakeArtifact(tmp_path / "tables"), FakeArtifact(evaluation),
                  FakeArtifact(footprint), FakeArtifact(board), verdict, promotion)  # fmt: skip
    assert json.loads(Path(promotion.path).read_text())["promoted"] is True
    # the same task with another model than the one judged publishes nothing
    int8.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(range(60)))
    with pytest.raises(ValueError, match="is not the model the verdict"):
        promote(params, "yamnet_256", FakeArtifact(tmp_path / "model"), FakeArtifact(tmp_path / "quantized"),
                      FakeArtifact(tmp_path / "generated"), FakeArtifact(tmp_path / "tables"), FakeArtifact(evaluation),
                      FakeArtifact(footprint), FakeArtifact(board), verdict, promotion)  # fmt: skip
    assert not Path(promotion.path).exists()
