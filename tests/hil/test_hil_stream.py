"""`aed hil run --stream`: a recording's patches through a (virtual) board in order, post-processed as host detect
does; the gate's stream checks; promotion needs the stream evidence the verdict judged."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from aed.detection.detect import DetectParams
from aed.detection.postprocess import Event
from aed.patching import PatchParams
from aed.record_schema import RecordError
from components.cli import main as aed_main
from components.hil import HilParams, run_stream, stream_source
from hil_runner.gate import GateParams, evaluate, load_stream_record
from hil_runner.stream import match_events
from tests.gate_records import CLASSES10, synthetic_record, write

# The tiny random model gives each of its 10 classes 0.098 or 0.102 on this audio: events start and stop at 0.1.
OPERATING_POINT = {"smoothing_windows": 1, "on_threshold": 0.1, "off_threshold": 0.1, "min_duration_s": 0.0,
                   "merge_gap_s": 0.0}  # fmt: skip


def _recording(path: Path, seconds: float, seed: int = 0, rate: int = 16000) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    # noise bursts and tones that change every second, so the scores move and events start and stop
    signal = 0.05 * rng.normal(size=t.size) + 0.3 * np.sin(2 * np.pi * (300 + 200 * np.floor(t)) * t)
    soundfile.write(path, (signal * (np.floor(t) % 2)).astype(np.float32), rate)
    return path


def _u5_inventory(vboard_factory, tmp_path: Path) -> Path:
    board = vboard_factory("b-u585i-iot02a", slot=tmp_path / "slots" / "u5.tflite")
    inventory = tmp_path / "boards.yaml"
    inventory.write_text(
        f"boards:\n  - {{name: u5-virtual, profile: b-u585i-iot02a, port: '{board.descriptor}', flash: none,"
        f" virtual: true, slot: slots/u5.tflite}}\n"
    )
    return inventory


def _hil_params(inventory: Path, tmp_path: Path) -> HilParams:
    return HilParams(farm="local", inventory=inventory, lock_dir=tmp_path / "locks", latency_repeats=1,
                     settle_s=0.05, attempts=1)  # fmt: skip


@pytest.fixture
def streamed(vboard_factory, tiny_model, patch_store, tmp_path) -> tuple[Path, dict]:
    recording = _recording(tmp_path / "living_room.wav", 9.3)
    out = tmp_path / "hil_stream.json"
    metrics = run_stream(_hil_params(_u5_inventory(vboard_factory, tmp_path), tmp_path), recording, tiny_model,
                         None, out, patches_dir=patch_store, progress=False, patch=PatchParams(),
                         detect=DetectParams(hop_s=0.5, **OPERATING_POINT))  # fmt: skip
    return out, metrics


def test_stream_through_a_virtual_board_gives_host_detects_events(streamed) -> None:
    out, metrics = streamed
    record = json.loads(out.read_text())
    assert record["kind"] == "hil-stream" and record["source"] == "virtual" and metrics["source"] == "virtual"
    # 9.3 s every 0.5 s with windows of 0.975 s: starts 0.0 ... 8.0, every one of them on the board, in order
    assert metrics["windows"] == 17
    # events that start and stop inside the recording, not only whole-recording ones
    assert any(e["onset"] > 0 or e["offset"] < 9.0 for e in record["events"]["board"])
    assert record["events"]["board"] == record["events"]["host"]
    assert metrics["identical_events"] and metrics["unmatched_events"] == 0
    assert (
        metrics["max_score_diff"] < 1e-6
    )  # the virtual board runs the reference kernels, as host detect here
    assert {e["filename"] for e in record["events"]["board"]} == {"living_room.wav"}
    assert record["detect"]["hop_s"] == 0.5 and record["detect"]["on_threshold"] == 0.1
    assert (
        load_stream_record(out)["model_sha256"]
        == hashlib.sha256(Path(record["model"]["path"]).read_bytes()).hexdigest()
    )


def test_the_gate_passes_the_streamed_record_of_the_model_it_judges(streamed, tmp_path) -> None:
    out, _ = streamed
    stream = json.loads(out.read_text())
    hil = write(tmp_path / "hil.json", _hil_record_for(stream))
    verdict = evaluate(hil, None, GateParams(check_budgets=False), stream_path=out)
    checks = {check.name: check.status for check in verdict.checks}
    assert checks["stream unmatched events"] == "pass" and checks["stream boundary diff s"] == "pass"
    assert checks["stream model"] == "pass" and checks["stream classes"] == "pass"


def _hil_record_for(stream: dict) -> dict:
    record = synthetic_record(stream["model_sha256"])
    record["key"]["class_names"] = list(stream["key"]["class_names"])
    record["accuracy"]["class_names"] = list(stream["key"]["class_names"])
    return record


# -- the gate's stream checks on synthetic records ---------------------------------------------------------------
def _stream_record(model_sha256: str, board: list[dict], host: list[dict]) -> dict:
    pairs = match_events([Event(**e) for e in board], [Event(**e) for e in host])
    return {
        "kind": "hil-stream", "source": "virtual", "model_sha256": model_sha256,
        "key": {"profile": "b-u585i-iot02a", "source": "virtual", "class_names": list(CLASSES10)},
        "metrics": {"board_events": len(board), "host_events": len(host), "matched_events": len(pairs.pairs),
                    "unmatched_events": pairs.unmatched, "max_onset_diff_s": pairs.max_onset_diff_s,
                    "max_offset_diff_s": pairs.max_offset_diff_s, "max_score_diff": 0.0, "windows": 100,
                    "identical_events": board == host},
        "events": {"board": board, "host": host},
    }  # fmt: skip


def _event(onset: float, offset: float, label: str = "dog") -> dict:
    return {"filename": "a.wav", "onset": onset, "offset": offset, "label": label, "peak": 0.9}


@pytest.fixture
def hil_record(tmp_path) -> Path:
    return write(tmp_path / "hil.json", synthetic_record())


def _verdict(hil_record: Path, stream: dict | None, tmp_path: Path, **params) -> tuple[str, dict[str, str]]:
    path = write(tmp_path / "stream.json", stream) if stream is not None else None
    verdict = evaluate(hil_record, None, GateParams(check_budgets=False, **params), stream_path=path)
    return verdict.verdict, {check.name: check.status for check in verdict.checks}


def test_a_differing_board_event_fails_the_gate(hil_record, tmp_path) -> None:
    model = synthetic_record()["model_sha256"]
    host = [_event(1.0, 2.5), _event(4.0, 5.0, "rooster")]
    same = _stream_record(model, host, host)
    missed = _stream_record(model, host[:1], host)  # the board missed the rooster
    shifted = _stream_record(model, [_event(1.5, 2.5), host[1]], host)  # the dog starts one hop late
    relabelled = _stream_record(model, [host[0], _event(4.0, 5.0, "rain")], host)
    assert _verdict(hil_record, same, tmp_path)[1]["stream unmatched events"] == "pass"
    assert _verdict(hil_record, missed, tmp_path)[1]["stream unmatched events"] == "fail"
    assert _verdict(hil_record, relabelled, tmp_path)[1]["stream unmatched events"] == "fail"
    assert _verdict(hil_record, shifted, tmp_path)[1]["stream boundary diff s"] == "fail"
    # within the params' thresholds, the same differences pass
    loose = {"max_stream_unmatched_events": 2, "max_stream_boundary_s": 0.5}
    for stream in (missed, shifted, relabelled):
        checks = _verdict(hil_record, stream, tmp_path, **loose)[1]
        assert checks["stream unmatched events"] == checks["stream boundary diff s"] == "pass"


def test_a_stream_of_another_model_or_class_map_is_undecidable(hil_record, tmp_path) -> None:
    other = _stream_record("b" * 64, [], [])
    assert _verdict(hil_record, other, tmp_path)[1]["stream model"] == "undecidable"
    relabelled = _stream_record(synthetic_record()["model_sha256"], [], [])
    relabelled["key"]["class_names"] = ["crying_baby", "dog", "rooster"]
    verdict, checks = _verdict(hil_record, relabelled, tmp_path)
    assert verdict == "undecidable" and checks["stream classes"] == "undecidable"


def test_require_stream_makes_a_verdict_without_the_stream_evidence_undecidable(hil_record, tmp_path) -> None:
    verdict, checks = _verdict(hil_record, None, tmp_path, require_stream=True)
    assert verdict == "undecidable"
    assert checks["stream record present"] == checks["streaming evaluation present"] == "undecidable"
    # not required: no stream check at all
    assert not [name for name in _verdict(hil_record, None, tmp_path)[1] if "stream" in name]


def test_a_simulated_stream_is_refused_when_only_board_evidence_counts(hil_record, tmp_path) -> None:
    stream = _stream_record(synthetic_record()["model_sha256"], [], [])
    assert (
        _verdict(hil_record, stream, tmp_path, allow_virtual=False)[1]["stream source allowed"]
        == "undecidable"
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["metrics"].update(max_onset_diff_s=float("nan")), "metrics.max_onset_diff_s"),
        (lambda r: r["metrics"].update(unmatched_events=-1), "metrics.unmatched_events"),
        (lambda r: r["metrics"].update(board_events=5), "do not count the events"),
        (lambda r: r["metrics"].update(matched_events=3), "exceeds the events"),
        (lambda r: r.update(kind="hil"), "kind"),
        (lambda r: r["key"].update(source="board"), "inconsistent source"),
        (lambda r: r["events"]["board"][0].update(peak=7.5), r"events.board\[0\].peak"),
        (lambda r: r.pop("metrics"), "metrics: missing"),
    ],
)
def test_a_malformed_stream_record_is_one_line_naming_the_field(hil_record, tmp_path, edit, message) -> None:
    record = _stream_record(synthetic_record()["model_sha256"], [_event(1.0, 2.0)], [_event(1.0, 2.0)])
    edit(record)
    path = write(tmp_path / "stream.json", record)
    with pytest.raises(RecordError, match=message) as error:
        evaluate(hil_record, None, GateParams(check_budgets=False), stream_path=path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_match_events_pairs_one_to_one_by_largest_overlap() -> None:
    board = [
        Event("a", 0.0, 2.0, "dog", 0.9),
        Event("a", 2.5, 3.0, "dog", 0.9),
        Event("a", 5.0, 6.0, "rain", 0.9),
    ]
    host = [Event("a", 0.5, 3.0, "dog", 0.9), Event("a", 5.0, 6.0, "dog", 0.9)]
    found = match_events(board, host)
    assert found.pairs == [(board[0], host[0])]  # 1.5 s of overlap beats 0.5 s; one host event, one partner
    assert found.only_first == board[1:] and found.only_second == host[1:]  # a label differs: no pair
    assert found.unmatched == 3 and found.max_onset_diff_s == 0.5 and found.max_offset_diff_s == 1.0


# -- bad inputs: one line, exit 2, nothing written ----------------------------------------------------------------
def _cli(tmp_path: Path, tiny_model: Path, patch_store: Path, *extra: str) -> list[str]:
    params = tmp_path / "params.yaml"
    params.write_text(f"hil:\n  farm: local\n  inventory: {tmp_path / 'none.yaml'}\n")
    return ["hil", "run", "--params", str(params), "--model", str(tiny_model), "--patches", str(patch_store),
            "--out", str(tmp_path / "out.json"), "--no-progress", *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "file not found"),
        ("empty folder", "a folder without audio"),
        ("truth without stream", "--truth only applies with --stream"),
        ("short", "shorter than one patch"),
        ("corrupt", "cannot"),
        ("class count", "3 classes"),
        ("out is the recording", "--out"),
        ("out in the patch store", "lies inside the --patches"),
    ],
)
def test_bad_stream_inputs_are_one_line_exit_2(
    case, message, tmp_path, tiny_model, patch_store, capsys
) -> None:
    store = patch_store
    if case == "missing":
        extra = ["--stream", str(tmp_path / "nope.wav")]
    elif case == "empty folder":
        (tmp_path / "set").mkdir()
        extra = ["--stream", str(tmp_path / "set")]
    elif case == "truth without stream":
        extra = ["--truth", str(tmp_path / "truth.csv")]
    elif case == "short":
        extra = ["--stream", str(_recording(tmp_path / "short.wav", 0.5))]
    elif case == "corrupt":
        (tmp_path / "bad.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
        extra = ["--stream", str(tmp_path / "bad.wav")]
    elif case == "class count":
        store = _three_class_store(tmp_path)
        extra = ["--stream", str(_recording(tmp_path / "ok.wav", 3.0))]
    else:
        recording = _recording(tmp_path / "ok.wav", 3.0)
        target = recording if case == "out is the recording" else patch_store / "hil_stream.json"
        extra = ["--stream", str(recording), "--out", str(target)]
    before = {p: p.read_bytes() for p in (*tmp_path.rglob("*.wav"), *patch_store.rglob("*")) if p.is_file()}
    assert aed_main(_cli(tmp_path, tiny_model, store, *extra)) == 2
    assert {p: p.read_bytes() for p in before} == before  # nothing overwritten
    assert not (patch_store / "hil_stream.json").exists()
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out.json").exists()


def _three_class_store(tmp_path: Path) -> Path:
    from aed.patchstore import write_patch_store

    root = tmp_path / "store3"
    clips = [({"clip_id": f"c{i}", "label": "dog", "fold": 1, "split": "test"}, np.zeros((1, 64, 96, 1), np.float32))
             for i in range(2)]  # fmt: skip
    write_patch_store(root, clips, ["crying_baby", "dog", "rooster"])
    return root


def test_a_soundscape_folder_streams_its_first_recording_with_its_ground_truth(tmp_path) -> None:
    folder = tmp_path / "eval"
    folder.mkdir()
    for index in (10, 2, 1):
        _recording(folder / f"eval-{index}.wav", 2.0)
    (folder / "ground_truth.csv").write_text("filename,onset,offset,event_label\neval-1.wav,0.5,1.0,dog\n")
    assert stream_source(folder, None) == (folder / "eval-1.wav", folder / "ground_truth.csv")
    given = tmp_path / "mine.csv"
    assert stream_source(folder, given) == (folder / "eval-1.wav", given)
    assert stream_source(folder / "eval-2.wav", None) == (folder / "eval-2.wav", None)
    # a folder of sets, one per split (artifacts/soundscapes/<model>/<split>-test): the first split's set
    sets = tmp_path / "yamnet_256"
    for split in ("fold-10-test", "fold-2-test"):
        (sets / split).mkdir(parents=True)
        _recording(sets / split / "x-0.wav", 2.0)
        (sets / split / "ground_truth.csv").write_text("filename,onset,offset,event_label\n")
    assert stream_source(sets, None) == (
        sets / "fold-2-test" / "x-0.wav",
        sets / "fold-2-test" / "ground_truth.csv",
    )


# -- promotion needs the stream evidence the verdict judged ---------------------------------------------------------
def test_promote_refuses_a_verdict_without_the_stream_evidence_it_requires(tmp_path) -> None:
    from components.promote import PromotionError, check_stream_evidence

    stream = write(tmp_path / "stream.json", {"kind": "hil-stream"})
    streaming = write(tmp_path / "streaming.json", {"f1": 0.5})
    evidence = {name: {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
                for name, path in (("stream", stream), ("streaming", streaming))}  # fmt: skip
    verdict = {"thresholds": {"require_stream": True}, "evidence": copy.deepcopy(evidence)}
    artifacts = {"hil_stream": stream, "streaming": streaming}
    check_stream_evidence(verdict, tmp_path / "gate.json", artifacts)  # the judged files: accepted
    with pytest.raises(PromotionError, match="names no stream or streaming evidence"):
        check_stream_evidence(
            {"thresholds": {"require_stream": True}, "evidence": {}}, tmp_path / "g", artifacts
        )
    stream.write_text('{"kind": "hil-stream", "edited": true}')
    with pytest.raises(PromotionError, match="not the stream evidence the verdict"):
        check_stream_evidence(verdict, tmp_path / "gate.json", artifacts)
    check_stream_evidence({"thresholds": {}, "evidence": {}}, tmp_path / "g", {})  # not required, none given


# -- the Kubeflow DAG: gate and promote get the stream evidence when the branch has it ---------------------------
class _Task:
    def __init__(self, **outputs: str) -> None:
        self.outputs = outputs


def test_the_dag_gives_gate_and_promote_the_stream_evidence_when_the_branch_has_it() -> None:
    import inspect

    from components.gate.task import gate
    from components.promote.task import promote
    from pipelines.aed_pipeline import _gate_inputs, _stream_inputs

    branch = {"evaluate": _Task(metrics="e"), "convert": _Task(metrics="c"), "hil": _Task(metrics="h")}
    assert _stream_inputs(branch) == {}  # no streaming task: the verdict is undecidable under require_stream
    branch.update(evaluate_streaming=_Task(details="s", soundscapes="x"), hil_stream=_Task(stream="hs"))
    assert _gate_inputs(branch) == {"evaluation": "e", "footprint": "c", "board": "h", "stream": "hs",
                                    "streaming": "s"}  # fmt: skip
    for body in (gate, promote):
        assert {"stream", "streaming"} <= set(inspect.signature(body).parameters)


def test_a_board_failing_mid_stream_is_retried_on_another_and_named(vboard_factory, tiny_model, patch_store,
                                                                    tmp_path) -> None:  # fmt: skip
    faulty = vboard_factory("b-u585i-iot02a", slot=tmp_path / "slots" / "a.tflite", faults=["error=5"])
    good = vboard_factory("b-u585i-iot02a", slot=tmp_path / "slots" / "b.tflite")
    inventory = tmp_path / "boards.yaml"
    lines = [f"  - {{name: {name}, profile: b-u585i-iot02a, port: '{board.descriptor}', flash: none, virtual: true,"
             f" slot: slots/{slot}}}" for name, board, slot in (("u5-a", faulty, "a.tflite"), ("u5-b", good, "b.tflite"))]  # fmt: skip
    inventory.write_text("boards:\n" + "\n".join(lines) + "\n")
    params = HilParams(farm="local", inventory=inventory, lock_dir=tmp_path / "locks", latency_repeats=1,
                       settle_s=0.05, attempts=2)  # fmt: skip
    out = tmp_path / "stream.json"
    metrics = run_stream(params, _recording(tmp_path / "r.wav", 4.0), tiny_model, None, out,
                         patches_dir=patch_store, progress=False, detect=DetectParams(**OPERATING_POINT))  # fmt: skip
    record = json.loads(out.read_text())
    assert metrics["board"] == "u5-b" and metrics["identical_events"]
    assert [attempt["board"] for attempt in record["failed_attempts"]] == ["u5-a"]


def test_board_inputs_are_quantized_as_host_detect_quantizes_them() -> None:
    """An exact half with an odd zero point: round(2.5 - 1) = 2 as detect and the firmware round; the protocol's
    round(2.5) - 1 = 1 would feed the board another input than host detect's interpreter gets."""
    from aed.quantize import quantize_input
    from hil_runner.protocol.tensors import TensorSpec, quantize
    from hil_runner.stream import board_inputs

    spec = TensorSpec(name="in", dtype=np.dtype(np.int8), shape=(1, 2, 1), scale=1.0, zero_point=-1)
    patches = np.array([[[2.5], [-0.3]]], np.float32)
    sent = board_inputs(patches, spec)
    assert sent.shape == (1, 1, 2, 1) and sent.dtype == np.int8
    assert sent.ravel().tolist() == quantize_input(patches, 1.0, -1).ravel().tolist() == [2, -1]
    assert quantize(patches, spec).ravel().tolist() == [1, -1]  # the difference this avoids
    floats = TensorSpec(name="in", dtype=np.dtype(np.float32), shape=(1, 2, 1), scale=0.0, zero_point=0)
    assert board_inputs(patches, floats).dtype == np.float32  # a QDQ ONNX model quantizes inside its graph
