"""The gate does not compare what is not comparable, and does not accept impossible or forged evidence.

Table-driven corpora: malformed and impossible records (as the candidate and as the baseline), forged
virtual-board evidence, key mismatches field by field, `--accept` over a baseline of another key, a stale
verdict after a failing or crashing gate, NaN thresholds. Each bad input gives exit 2 and one line naming the
file and the field; none gives a traceback or a verdict that could be promoted."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from aed.record_schema import RecordError, record_is_virtual, validate_hil_record
from components.cli import main as aed_main
from components.gate import run as gate_run
from hil_runner.gate import REQUIRED_KEY_FIELDS, GateParams, evaluate
from tests.gate_records import as_board, set_key, set_metric, synthetic_record, write


def _set(dotted: str, value) -> Callable[[dict], None]:
    def change(record: dict) -> None:
        *parents, last = dotted.split(".")
        target = record
        for part in parents:
            target = target[part]
        target[last] = value

    return change


def _delete(dotted: str) -> Callable[[dict], None]:
    def change(record: dict) -> None:
        *parents, last = dotted.split(".")
        target = record
        for part in parents:
            target = target[part]
        del target[last]

    return change


def _metric(name: str, value) -> Callable[[dict], None]:
    return lambda record: set_metric(record, name, value)


def _key(name: str, value) -> Callable[[dict], None]:
    return lambda record: set_key(record, name, value)


# (case id, change to a valid record, the field the one-line error must name)
MALFORMED = [
    ("key null", _set("key", None), "key: expected an object"),
    ("key list", _set("key", []), "key: expected an object"),
    ("key string", _set("key", "x"), "key: expected an object"),
    ("metrics list", _set("metrics", [0.9]), "metrics: expected an object"),
    ("metrics null", _set("metrics", None), "metrics: expected an object"),
    ("metrics missing", _delete("metrics"), "metrics: missing"),
    ("board list", _set("board", ["vb0"]), "board: expected an object"),
    ("accuracy 7.5", _metric("clip_accuracy", 7.5), "metrics.clip_accuracy: 7.5 is outside [0.0, 1.0]"),
    ("accuracy -0.1", _metric("clip_accuracy", -0.1), "metrics.clip_accuracy: -0.1 is outside"),
    ("accuracy inf", _metric("clip_accuracy", math.inf), "metrics.clip_accuracy: inf is not a finite number"),
    ("accuracy nan", _metric("clip_accuracy", math.nan), "metrics.clip_accuracy: nan is not a finite number"),
    ("accuracy string", _metric("clip_accuracy", "0.9"), "metrics.clip_accuracy: expected a number"),
    ("accuracy bool", _metric("clip_accuracy", True), "metrics.clip_accuracy: expected a number"),
    ("accuracy null", _metric("clip_accuracy", None), "metrics.clip_accuracy: expected a number"),
    ("accuracy missing", _delete("metrics.clip_accuracy"), "metrics.clip_accuracy: missing"),
    ("host accuracy 2", _metric("host_clip_accuracy", 2.0), "metrics.host_clip_accuracy: 2.0 is outside"),
    ("agreement 1.5", _metric("top1_agreement", 1.5), "metrics.top1_agreement: 1.5 is outside"),
    ("agreement nan", _metric("top1_agreement", math.nan), "metrics.top1_agreement: nan"),
    ("cosine -2", _metric("cosine_min", -2.0), "metrics.cosine_min: -2.0 is outside [-1.0, 1.0]"),
    ("cosine 1.01", _metric("cosine_min", 1.01), "metrics.cosine_min: 1.01 is outside"),
    ("l2r negative", _metric("l2r_max", -0.5), "metrics.l2r_max: -0.5 is outside"),
    ("l2r inf", _metric("l2r_max", math.inf), "metrics.l2r_max: inf"),
    ("latency negative", _metric("latency_median_ms", -3.0), "metrics.latency_median_ms: -3.0 must be > 0.0"),
    ("latency zero", _metric("latency_median_ms", 0.0), "metrics.latency_median_ms: 0.0 must be > 0.0"),
    ("latency inf", _metric("latency_median_ms", math.inf), "metrics.latency_median_ms: inf"),
    ("latency -inf", _metric("latency_median_ms", -math.inf), "metrics.latency_median_ms: -inf"),
    ("latency missing", _delete("metrics.latency_median_ms"), "metrics.latency_median_ms: missing"),
    ("weights negative", _metric("weights_bytes", -1), "metrics.weights_bytes: -1 is outside"),
    ("weights 10**400", _metric("weights_bytes", 10**400), "metrics.weights_bytes: 1000"),
    ("accuracy 10**400", _metric("clip_accuracy", 10**400), "outside the 64-bit integer range"),
    ("latency 1e309", _metric("latency_median_ms", 1e309), "metrics.latency_median_ms: inf"),
    ("weights fraction", _metric("weights_bytes", 1.5), "metrics.weights_bytes: expected an integer"),
    ("weights string", _metric("weights_bytes", "1k"), "metrics.weights_bytes: expected an integer"),
    ("activations negative", _metric("activations_bytes", -4096), "metrics.activations_bytes: -4096"),
    ("activations missing", _delete("metrics.activations_bytes"), "metrics.activations_bytes: missing"),
    ("cycles negative", _metric("cycles_median", -1), "metrics.cycles_median: -1 is outside"),
    ("kind missing", _delete("kind"), "kind: missing"),
    ("kind evaluate", _set("kind", "evaluate"), "kind: expected one of ['hil']"),
    ("source unknown", _set("source", "simulator"), "source: expected one of"),
    ("model sha short", _set("model_sha256", "abc"), "model_sha256:"),
    ("class names empty", _key("class_names", []), "key.class_names: expected a non-empty list"),
    ("class names repeat", _key("class_names", ["a", "a"]), "key.class_names: names repeat"),
    ("class names string", _key("class_names", "dog,rain"), "key.class_names: expected a non-empty list"),
    ("class names numbers", _key("class_names", [1, 2]), "key.class_names: expected non-empty strings"),
    ("class names missing", _delete("key.class_names"), "key.class_names: missing"),
    ("eval patches 0", _key("eval_patches", 0), "key.eval_patches: 0 is outside"),
    ("eval patches text", _key("eval_patches", "172"), "key.eval_patches: expected an integer"),
    ("dataset hash short", _set("key.dataset_sha256", "abc"), "key.dataset_sha256:"),
    ("dataset hash missing", _delete("key.dataset_sha256"), "key.dataset_sha256: missing"),
    ("frontend hash null", _set("key.frontend_sha256", None), "key.frontend_sha256: expected a non-empty"),
    ("eval set hash upper", _set("key.eval_set_sha256", "A" * 64), "key.eval_set_sha256:"),
    ("model format pt", _set("key.model_format", "pt"), "key.model_format: expected one of"),
    ("runtime missing", _delete("key.runtime"), "key.runtime: missing"),
    ("key source null", _set("key.source", None), "key.source: expected a non-empty string"),
    ("sclock negative", _key("sclock_hz", -1), "sclock_hz: -1 must be > 0"),
    ("device id garbage", _key("device_id", "U5"), "key.device_id:"),
    ("profile empty", _key("profile", ""), "profile: expected a non-empty string"),
    # fields the job writes twice and only one copy was edited
    ("model sha edited", _set("model_sha256", "0" * 64), "model_sha256"),
    ("accuracy edited once", _set("metrics.clip_accuracy", 0.99), "metrics.clip_accuracy (0.99) differs"),
    ("profile edited once", _set("key.profile", "stm32n6570-dk"), "key.profile"),
    ("classes edited once", _set("key.class_names", ["a", "b", "c"]), "key.class_names"),
    ("patch count edited once", _set("key.eval_patches", 40), "key.eval_patches (40) differs"),
    # forged board evidence: every virtual-board signal must agree
    ("top-level source board", _set("source", "board"), "inconsistent board evidence"),
    ("key source board", _set("key.source", "board"), "inconsistent board evidence"),
    ("board flag false", _set("board.virtual", False), "inconsistent board evidence"),
    ("latency source board", _set("latency.source", "board"), "inconsistent board evidence"),
    ("runtime real", _key("runtime", "X-CUBE-AI 10.2.0"), "inconsistent board evidence"),
]


def _params(tmp_path: Path, text: str = "gate: {}\n") -> Path:
    return write(tmp_path / "params.yaml", text)


def _gate_cli(tmp_path: Path, record: Path, baseline: Path, *extra: str) -> list[str]:
    return ["gate", "--params", str(_params(tmp_path)), "--record", str(record), "--baseline", str(baseline),
            "--verdict", str(tmp_path / "verdict.json"), *extra]  # fmt: skip


def _one_line_error(capsys, code: int) -> str:
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err + captured.out, captured.err
    return lines[0]


@pytest.mark.parametrize("role", ["record", "baseline"])
@pytest.mark.parametrize(("case", "change", "message"), MALFORMED, ids=[case[0] for case in MALFORMED])
def test_malformed_evidence_is_refused_with_one_line(tmp_path, capsys, role, case, change, message) -> None:
    bad = synthetic_record()
    change(bad)
    good = write(tmp_path / "good.json", synthetic_record())
    bad_path = write(tmp_path / f"bad-{role}.json", json.dumps(bad))  # json.dumps writes NaN / Infinity
    record, baseline = (bad_path, good) if role == "record" else (good, bad_path)
    with pytest.raises(RecordError) as raised:
        evaluate(record, baseline, GateParams())
    assert str(raised.value).startswith(f"{bad_path}: ") and message in str(raised.value)
    stale = write(tmp_path / "verdict.json", {"verdict": "pass", "promotable": True})
    line = _one_line_error(capsys, aed_main(_gate_cli(tmp_path, record, baseline)))
    assert str(bad_path) in line and message in line
    assert not stale.exists()  # no verdict, in particular not the earlier passing one


# Files that are not a record at all.
UNREADABLE = [
    ("empty file", "", "is not valid JSON"),
    ("truncated", '{"kind": "hil", "key": {', "is not valid JSON"),
    ("a list", "[1, 2]", "top level: expected an object"),
    ("a string", '"hil"', "top level: expected an object"),
    ("null", "null", "top level: expected an object"),
    ("NaN literal", "NaN", "top level: expected an object"),
    ("deeply nested", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("binary", b"\xff\xfe\x00garbage", "is not valid JSON"),
]


@pytest.mark.parametrize(("case", "content", "message"), UNREADABLE, ids=[case[0] for case in UNREADABLE])
def test_unreadable_files_are_refused_with_one_line(tmp_path, capsys, case, content, message) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    good = write(tmp_path / "good.json", synthetic_record())
    for record, baseline in ((bad, good), (good, bad)):
        line = _one_line_error(capsys, aed_main(_gate_cli(tmp_path, record, baseline)))
        assert line.startswith("aed gate: error: ") and str(bad) in line and message in line


def test_a_directory_as_the_record_is_refused(tmp_path, capsys) -> None:
    (tmp_path / "dir.json").mkdir()
    good = write(tmp_path / "good.json", synthetic_record())
    line = _one_line_error(capsys, aed_main(_gate_cli(tmp_path, tmp_path / "dir.json", good)))
    assert "dir.json: record not found (a directory)" in line


def test_the_synthetic_record_itself_passes(tmp_path) -> None:
    """The corpus above changes one thing each: the unchanged record must pass, or the corpus proves nothing."""
    path = write(tmp_path / "r.json", synthetic_record())
    assert evaluate(path, path, GateParams()).verdict == "pass"


def test_one_function_decides_what_is_virtual(tmp_path) -> None:
    virtual, board = synthetic_record(), as_board(synthetic_record())
    assert record_is_virtual(virtual, "v") is True and record_is_virtual(board, "b") is False
    strict = GateParams(allow_virtual=False)
    board_path = write(tmp_path / "board.json", board)
    assert evaluate(board_path, board_path, strict).verdict == "pass"
    virtual_path = write(tmp_path / "virtual.json", virtual)
    verdict = evaluate(virtual_path, virtual_path, strict)
    assert verdict.exit_code == 2 and "not board evidence" in verdict.checks[0].detail
    forged = copy.deepcopy(virtual)
    forged["source"] = "board"  # the measured forgery: only the top-level source edited
    with pytest.raises(
        RecordError, match="inconsistent board evidence: .*say virtual board but source say real"
    ):
        evaluate(write(tmp_path / "forged.json", forged), board_path, strict)


# Each key field, changed in the candidate only (with the copies the job writes, so that the record is valid).
KEY_CHANGES = [
    ("profile", "stm32n6570-dk"),
    ("device_id", "0x486"),
    ("sclock_hz", 800_000_000),
    ("runtime_version", "10.3.0"),
    ("tool_version", "3.0.0"),
    ("kernels", "BUILTIN"),
    ("host_litert", "2.4.0"),
    ("class_names", ["dog", "rain", "rooster"]),
    ("class_names", ["clock_tick", "chainsaw", *synthetic_record()["key"]["class_names"][2:]]),  # order only
    ("eval_set_sha256", "1" * 64),
    ("eval_patches", 40),
    ("frontend_sha256", "2" * 64),
    ("dataset_sha256", "3" * 64),
    ("model_format", "onnx_qdq"),
    ("runtime", "virtual board (b-u585i-iot02a, BUILTIN)"),
]


@pytest.mark.parametrize(("field", "value"), KEY_CHANGES)
def test_a_key_mismatch_names_each_differing_field(tmp_path, capsys, field, value) -> None:
    baseline = write(tmp_path / "baseline.json", synthetic_record())
    candidate = set_key(synthetic_record(), field, value)
    record = write(tmp_path / "record.json", candidate)
    verdict = evaluate(record, baseline, GateParams())
    assert verdict.exit_code == 2 and not any(c.name == "clip accuracy" for c in verdict.checks)
    assert [c.name for c in verdict.key_mismatches()] == [f"key {field}"]
    code = aed_main(_gate_cli(tmp_path, record, baseline))
    out = capsys.readouterr().out.splitlines()
    assert code == 2
    mismatches = [line for line in out if "key mismatch" in line]
    assert len(mismatches) == 1 and f"key mismatch: {field}: baseline " in mismatches[0]
    assert len(mismatches[0]) < 160  # long hashes and class lists are shortened
    if field.endswith("_sha256"):
        assert (
            f'candidate "{str(value)[:12]}…' not in mismatches[0] and f"{str(value)[:12]}…" in mismatches[0]
        )
    written = json.loads((tmp_path / "verdict.json").read_text())
    assert written["verdict"] == "undecidable" and written["promotable"] is False


def test_source_mismatch_and_several_fields_give_one_line_each(tmp_path, capsys) -> None:
    baseline = write(tmp_path / "baseline.json", synthetic_record())
    candidate = as_board(synthetic_record())
    set_key(candidate, "class_names", ["a", "b", "c"])
    set_key(candidate, "eval_patches", 40)
    record = write(tmp_path / "record.json", candidate)
    code = aed_main(_gate_cli(tmp_path, record, baseline))
    lines = [line for line in capsys.readouterr().out.splitlines() if "key mismatch" in line]
    assert code == 2
    assert [line.split(":")[2].strip() for line in lines] == [
        "source",
        "class_names",
        "eval_patches",
        "runtime",
    ]


def test_required_key_fields_are_compared_even_if_params_drop_them(tmp_path) -> None:
    baseline = write(tmp_path / "baseline.json", synthetic_record())
    record = write(tmp_path / "record.json", set_key(synthetic_record(), "dataset_sha256", "4" * 64))
    thresholds = GateParams(key_fields=("profile",))
    assert set(REQUIRED_KEY_FIELDS) <= set(thresholds.compared_fields())
    assert evaluate(record, baseline, thresholds).exit_code == 2


def test_a_baseline_of_the_old_key_is_refused_naming_the_missing_field(tmp_path) -> None:
    old = synthetic_record()
    for name in ("class_names", "eval_set_sha256", "eval_patches", "frontend_sha256", "dataset_sha256",
                 "model_format", "runtime"):  # fmt: skip
        del old["key"][name]
    baseline = write(tmp_path / "old-baseline.json", old)
    with pytest.raises(RecordError, match=r"old-baseline.json: key.class_names: missing"):
        evaluate(write(tmp_path / "record.json", synthetic_record()), baseline, GateParams())


def test_accept_refuses_a_baseline_of_another_key_unless_replace(tmp_path, capsys) -> None:
    baseline = write(tmp_path / "baseline.json", synthetic_record())
    before = baseline.read_text()
    other = write(tmp_path / "other.json", set_key(synthetic_record(), "class_names", ["dog", "rain", "sea"]))
    args = _gate_cli(tmp_path, other, baseline, "--accept")
    line = _one_line_error(capsys, aed_main(args))
    assert "another key" in line and "class_names" in line and "--replace" in line
    assert baseline.read_text() == before
    assert aed_main([*args, "--replace"]) == 0
    assert json.loads(baseline.read_text())["key"]["class_names"] == ["dog", "rain", "sea"]
    # same key: a renewal needs no --replace
    renewed = write(tmp_path / "renewed.json", set_key(set_metric(synthetic_record(), "clip_accuracy", 0.9),
                                                       "class_names", ["dog", "rain", "sea"]))  # fmt: skip
    assert aed_main(_gate_cli(tmp_path, renewed, baseline, "--accept")) == 0
    capsys.readouterr()
    # a malformed existing baseline is not silently overwritten either
    write(baseline, {**synthetic_record(), "key": None})
    line = _one_line_error(capsys, aed_main(_gate_cli(tmp_path, renewed, baseline, "--accept")))
    assert "key: expected an object" in line and "--replace" in line
    # a malformed record never becomes a baseline
    bad = write(tmp_path / "bad.json", json.dumps(set_metric(synthetic_record(), "clip_accuracy", math.nan)))
    line = _one_line_error(capsys, aed_main(_gate_cli(tmp_path, bad, baseline, "--accept", "--replace")))
    assert "bad.json: metrics.clip_accuracy: nan" in line
    assert json.loads(baseline.read_text())["key"] is None
    assert _one_line_error(capsys, aed_main(_gate_cli(tmp_path, renewed, baseline, "--replace")))


def test_a_gate_that_fails_or_crashes_leaves_no_earlier_verdict(tmp_path, monkeypatch) -> None:
    record = write(tmp_path / "record.json", synthetic_record())
    params = GateParams()
    out, table = tmp_path / "verdict.json", tmp_path / "table.md"
    assert gate_run(params, record, out, baseline=record, table_path=table)["passed"]
    assert json.loads(out.read_text())["promotable"] and table.exists()

    import hil_runner.gate

    def crash(*args, **kwargs):
        raise RuntimeError("gate crashed")

    monkeypatch.setattr(hil_runner.gate, "evaluate", crash)
    with pytest.raises(RuntimeError, match="gate crashed"):
        gate_run(params, record, out, baseline=record, table_path=table)
    assert not out.exists() and not table.exists()
    monkeypatch.undo()
    assert gate_run(params, record, out, baseline=record)["passed"]
    write(tmp_path / "record.json", set_metric(synthetic_record(), "clip_accuracy", 0.5))
    result = gate_run(params, record, out, baseline=write(tmp_path / "b.json", synthetic_record()))
    assert result["verdict"] == "regression" and json.loads(out.read_text())["promotable"] is False


def test_the_verdict_names_the_model_and_the_record_it_judged(tmp_path) -> None:
    from aed.records import sha256_file

    record = write(tmp_path / "record.json", synthetic_record(model_sha256="ab" * 32, model_path="m.tflite"))
    gate_run(GateParams(), record, tmp_path / "verdict.json", baseline=record)
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert verdict["model"] == {"path": "m.tflite", "sha256": "ab" * 32}
    assert verdict["record"] == {"path": str(record), "sha256": sha256_file(record)}
    assert verdict["baseline"]["sha256"] == sha256_file(record)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("min_cosine: .nan", "gate.min_cosine: expected a finite number, got nan"),
        ("max_accuracy_drop: .nan", "gate.max_accuracy_drop: expected a finite number, got nan"),
        ("max_latency_increase: .inf", "gate.max_latency_increase"),
        ("min_top1_agreement: .nan", "gate.min_top1_agreement: expected a finite number, got nan"),
        ("max_l2r: .nan", "gate.max_l2r: expected a finite number, got nan"),
        ("key_fields: [profile, colour]", "gate.key_fields: unknown field(s) ['colour']"),
    ],
)
def test_impossible_gate_params_are_refused(tmp_path, capsys, setting, message) -> None:
    record = write(tmp_path / "record.json", synthetic_record())
    args = ["gate", "--params", str(_params(tmp_path, f"gate:\n  {setting}\n")), "--record", str(record),
            "--baseline", str(record), "--verdict", str(tmp_path / "verdict.json")]  # fmt: skip
    line = _one_line_error(capsys, aed_main(args))
    assert message in line and not (tmp_path / "verdict.json").exists()


def test_record_checks_name_the_file(tmp_path) -> None:
    record = set_metric(synthetic_record(), "clip_accuracy", 7.5)
    with pytest.raises(RecordError, match=r"^reports/hil\.json: metrics\.clip_accuracy: 7\.5 is outside"):
        validate_hil_record(record, "reports/hil.json")


def test_nan_gate_thresholds_are_refused_before_a_pipeline_starts() -> None:
    from pipelines.glue import validate_params

    with pytest.raises(ValueError, match="gate.min_cosine: expected a finite number, got nan"):
        validate_params({"gate": {"min_cosine": math.nan, "baseline": "/opt/aed/baseline.json"}}, ["gate"])
    assert validate_params({"gate": {"baseline": "/opt/aed/baseline.json"}}, ["gate"]) == []


def test_output_paths_that_are_folders_are_refused_with_one_line(tmp_path, capsys) -> None:
    record = write(tmp_path / "record.json", synthetic_record())
    (tmp_path / "folder").mkdir()
    args = _gate_cli(tmp_path, record, record)
    args[args.index("--verdict") + 1] = str(tmp_path / "folder")
    assert "folder: is a directory" in _one_line_error(capsys, aed_main(args))
    args = _gate_cli(tmp_path, record, tmp_path / "folder", "--accept", "--replace")
    assert "folder: is a directory" in _one_line_error(capsys, aed_main(args))
    params = write(tmp_path / "hil.yaml", "hil:\n  farm: local\n")
    args = ["hil", "run", "--params", str(params), "--model", str(record), "--patches", str(tmp_path),
            "--out", str(tmp_path / "folder")]  # fmt: skip
    assert "folder: is a directory" in _one_line_error(capsys, aed_main(args))


@pytest.mark.parametrize(
    "pattern", ["baselines/{colour}.json", "baselines/{0}.json", "baselines/{model_name.json"]
)
def test_a_baseline_pattern_it_cannot_fill_is_refused_at_load(pattern: str, tmp_path) -> None:
    from aed.params import ParamsError, load_section

    path = tmp_path / "params.yaml"
    path.write_text(f"gate:\n  baseline: '{pattern}'\n")
    with pytest.raises(
        ParamsError, match=r"params\.yaml: gate\.baseline: .* only \{model_name\} and \{profile\}"
    ):
        load_section(path, "gate", GateParams)
