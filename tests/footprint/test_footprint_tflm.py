"""The TFLM deployment target: the offline plan embedded, honoured and proved in tflite-micro (reference kernels),
the convert step's `runtime` setting, and the gate key that keeps a failed proof from being promoted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aed.footprint import load_graph
from aed.footprint.planner import ALIGNMENT, plan_greedy, plan_improved
from aed.footprint.tflm import (
    VERIFIED_WITH,
    allocates,
    embed_offline_plan,
    offline_offsets,
    read_offline_offsets,
    smallest_arena,
)
from aed.footprint.tflm_proof import deploy, prove_bit_exact, prove_tight
from tests.footprint.conftest import calibration
from tests.gate_records import synthetic_record, write


def _store(root: Path, patches: int = 6, seed: int = 0) -> Path:
    from aed.patchstore import write_patch_store

    rng = np.random.default_rng(seed)
    clips = [
        ({"clip_id": f"c{k}", "label": "a" if k % 2 else "b", "fold": 1, "split": "train"},
         rng.normal(-4.0, 2.0, size=(patches // 2, 64, 96, 1)).astype(np.float32))
        for k in range(2)
    ]  # fmt: skip
    write_patch_store(root, clips, ["a", "b"])
    return root


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return _store(tmp_path_factory.mktemp("tflm_store") / "patches")


def test_offline_plan_round_trips(tiny_int8: Path, tmp_path: Path) -> None:
    graph = load_graph(tiny_int8)
    offsets = offline_offsets(graph, plan_improved(graph))
    planned = tmp_path / "planned.tflite"
    embed_offline_plan(tiny_int8, planned, offsets)
    assert read_offline_offsets(tiny_int8) is None
    assert read_offline_offsets(planned) == offsets
    # embedding again replaces the entry instead of adding a second one
    again = tmp_path / "again.tflite"
    embed_offline_plan(planned, again, [-1] * len(offsets))
    assert read_offline_offsets(again) == [-1] * len(offsets)
    rewritten = load_graph(planned)  # the same graph: only a buffer and a metadata entry were added
    assert [op.op for op in rewritten.ops] == [op.op for op in graph.ops]
    assert len(rewritten.tensors) == len(graph.tensors) == len(offsets)


def test_yamnet256_plan_is_honoured_tight_and_bit_exact(yamnet256_int8: Path, tmp_path: Path) -> None:
    """The issue's figures, on the reference architecture: TFLM's head is the improved plan's, well under the
    unplanned arena, the arena is tight to one alignment step, and outputs are bit-exact."""
    graph = load_graph(yamnet256_int8)
    patches = calibration(8, (64, 96, 1), seed=3)
    tflm = deploy(yamnet256_int8, tmp_path / "y_tflm.tflite", patches, jobs=1)
    assert tflm["arena"]["head_bytes"] == plan_improved(graph).head  # the offline plan is what TFLM used
    assert tflm["unplanned_arena"]["head_bytes"] == plan_greedy(graph).head
    assert tflm["arena"]["transient_bytes"] == 0  # head + tail is the whole arena for this graph
    assert tflm["arena"]["arena_bytes"] < 0.75 * tflm["unplanned_arena"]["arena_bytes"]
    assert tflm["proof"] == {
        "passed": True,
        "bit_exact": {"inputs": 8, "differing_outputs": 0, "first_differing": [], "bit_exact": True},
        "tight": {
            "allocates_at_bytes": tflm["arena"]["arena_bytes"],
            "allocates": True,
            "one_step_smaller_bytes": tflm["arena"]["arena_bytes"] - ALIGNMENT,
            "one_step_smaller_fails": True,
            "one_step_smaller_outcome": "fails to allocate",
            "tight": True,
        },
    }
    assert tflm["verified_with"] == VERIFIED_WITH and "not with CMSIS-NN" in VERIFIED_WITH


def test_proof_catches_an_unsafe_plan(yamnet256_int8: Path, tmp_path: Path) -> None:
    """Every activation at offset 0: each op overwrites the input it is reading. TFLM honours the plan, so the
    outputs differ and the proof fails (in worker processes, the path the step takes)."""
    graph = load_graph(yamnet256_int8)
    bad = tmp_path / "bad.tflite"
    offsets = [0 if o >= 0 else -1 for o in offline_offsets(graph, plan_improved(graph))]
    embed_offline_plan(yamnet256_int8, bad, offsets)
    planned, unplanned = bad.read_bytes(), yamnet256_int8.read_bytes()
    arenas = smallest_arena(planned).bytes, smallest_arena(unplanned).bytes
    rng = np.random.default_rng(0)
    inputs = rng.integers(-128, 128, size=(130, 1, 64, 96, 1)).astype(np.int8)  # two chunks: two workers
    result = prove_bit_exact(planned, unplanned, arenas, inputs, jobs=2)
    assert not result["bit_exact"] and result["differing_outputs"] > 0 and result["inputs"] == 130


def test_smallest_arena_is_the_least_that_allocates(tiny_int8: Path) -> None:
    data = tiny_int8.read_bytes()
    arena = smallest_arena(data)
    assert arena.bytes % ALIGNMENT == 0
    assert allocates(data, arena.bytes) and not allocates(data, arena.bytes - ALIGNMENT)
    # the tightness check rejects a figure one step too large, and one too small
    assert prove_tight(data, arena.bytes)["tight"]
    assert not prove_tight(data, arena.bytes + ALIGNMENT)["tight"]
    assert not prove_tight(data, arena.bytes - ALIGNMENT)["allocates"]


# -- the convert step --------------------------------------------------------------------------------------------
def _params(path: Path, **convert) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"convert": {"use_stedgeai": "never", **convert}}))
    return path


def test_convert_runtime_tflm_writes_model_header_and_record(
    yamnet256_int8: Path, store: Path, tmp_path: Path
) -> None:
    from components.convert import ConvertParams, run

    out, record_path = tmp_path / "out", tmp_path / "convert.json"
    params = ConvertParams(use_stedgeai="never", runtime="tflm", tflm_jobs=1)
    record = run(params, yamnet256_int8, "stm32u5", out, record_path, patches=store, model_name="yamnet_256")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "yamnet_256_tflm.tflite", "yamnet_256_tflm_arena.h",
    ]  # fmt: skip
    written = json.loads(record_path.read_text())
    tflm = written["tflm"]
    assert written["runtime"] == "tflm" and written["source"] == "tflm" and tflm["source"] == "tflm"
    assert written["tool_version"] == tflm["tflite_micro_version"] != ""
    assert written["activations_bytes"] == tflm["arena"]["arena_bytes"] == record["activations_bytes"]
    assert tflm["proof"]["passed"] and tflm["proof"]["bit_exact"]["inputs"] == 6
    assert set(written["inputs"]) == {"model", "patches"}
    header = (out / "yamnet_256_tflm_arena.h").read_text()
    assert f"#define YAMNET_256_TFLM_ARENA_BYTES {tflm['arena']['arena_bytes']}u" in header
    assert "NOT with CMSIS-NN" in header
    assert read_offline_offsets(out / "yamnet_256_tflm.tflite") is not None
    assert written["estimator"]["calibration"]["stedgeai_version"] == "3.0.0"


def test_convert_runtime_both_keeps_the_estimator_figures(
    yamnet256_int8: Path, store: Path, tmp_path: Path
) -> None:
    from components.convert import ConvertParams, run

    params = ConvertParams(use_stedgeai="never", runtime="both", tflm_jobs=1, tflm_proof_patches=2)
    record = run(params, yamnet256_int8, "stm32u5", tmp_path / "o", None, patches=store)
    assert record["source"] == "estimator" and record["runtime"] == "both"
    assert record["activations_bytes"] == record["estimator"]["activations"]["improved_bytes"]
    assert record["tflm"]["proof"]["bit_exact"]["inputs"] == 2  # a seeded sample of the store
    assert record["tflm"]["model_file"] == f"{yamnet256_int8.stem}_tflm.tflite"


def test_convert_onnx_gets_the_estimate_only(tiny_qdq: Path, tmp_path: Path) -> None:
    from components.convert import ConvertParams, run

    record = run(
        ConvertParams(use_stedgeai="never", runtime="tflm"), tiny_qdq, "stm32n6", tmp_path / "o", None
    )
    assert record["source"] == "estimator" and record["runtime"] == "tflm"
    assert (
        record["tflm"]["status"].startswith("not applicable") and "estimate only" in record["tflm"]["status"]
    )


def test_convert_stedgeai_runtime_needs_no_patches(tiny_int8: Path, tmp_path: Path) -> None:
    from components.convert import ConvertParams, run

    record = run(
        ConvertParams(use_stedgeai="never", runtime="stedgeai"), tiny_int8, "stm32u5", tmp_path / "o", None
    )
    assert record["tflm"] == {"status": "not requested (convert.runtime: stedgeai)"}


@pytest.mark.parametrize(
    ("extra", "convert", "expected"),
    [
        ([], {"runtime": "tflm"}, "give --patches"),
        (["--patches", "{missing}"], {"runtime": "both"}, "missing; is"),
        ([], {"runtime": "tlfm"}, "convert.runtime"),
        ([], {"tflm_proof_patches": -1}, "convert.tflm_proof_patches"),
        ([], {"estimator_calibration": "4.0.0"}, "convert.estimator_calibration"),
        (
            ["--patches", "{store}"],
            {"runtime": "tflm"},
            "the model input is (1, 16, 12, 3) but the patch store",
        ),
        (["--patches", "{empty}"], {"runtime": "tflm"}, "empty/index.csv: missing; is"),
        (["--patches", "{store}", "--out"], {"runtime": "tflm"}, "--patches"),  # the output over the input
    ],
)
def test_convert_bad_tflm_input_is_one_line_exit_2(
    tiny_int8: Path, store: Path, tmp_path: Path, capsys, extra: list[str], convert: dict, expected: str
) -> None:
    from pipelines.cli import main

    params = _params(tmp_path / "params.yaml", **convert)
    (tmp_path / "empty").mkdir()
    extra = [e.format(missing=tmp_path / "nowhere", store=store, empty=tmp_path / "empty") for e in extra]
    out = store if "--out" in extra else tmp_path / "o"
    extra = [e for e in extra if e != "--out"]
    code = main(
        ["convert", "--params", str(params), "--model", str(tiny_int8), "--target", "stm32u5",
         "--out", str(out), "--record", str(tmp_path / "r.json"), *extra]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert expected in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r.json").exists()


# -- the gate key ------------------------------------------------------------------------------------------------
def _gate(tmp_path: Path, tflm: dict | None) -> dict:
    from components.gate import run
    from hil_runner.gate import GateParams

    record = write(tmp_path / "hil.json", synthetic_record())
    baseline = write(tmp_path / "baseline.json", synthetic_record())
    convert = write(tmp_path / "convert.json", {"source": "estimator", **({"tflm": tflm} if tflm else {})})
    return run(GateParams(), record, tmp_path / "verdict.json", baseline=baseline, convert_record=convert)


def _tflm(passed: bool) -> dict:
    return {"source": "tflm", "arena": {"arena_bytes": 116_448}, "proof": {"passed": passed}}


def test_gate_fails_a_model_whose_tflm_proof_failed(tmp_path: Path) -> None:
    failed = _gate(tmp_path, _tflm(False))
    assert not failed["passed"] and failed["verdict"] == "regression"
    assert "TFLM plan proof" in failed["table"]
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert not verdict["promotable"]


@pytest.mark.parametrize(
    "tflm", [_tflm(True), None, {"status": "not applicable: .onnx model"}], ids=["passed", "absent", "onnx"]
)
def test_gate_passes_a_proved_or_absent_tflm_deployment(tmp_path: Path, tflm: dict | None) -> None:
    result = _gate(tmp_path, tflm)
    assert result["passed"], result["table"]
    assert ("TFLM plan proof" in result["table"]) == (tflm is not None and "proof" in tflm)


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "convert record is not valid JSON"), ("[1, 2]", "convert record is not a JSON object")],
)
def test_gate_with_an_unreadable_convert_record_is_refused(
    tmp_path: Path, content: str, message: str
) -> None:
    from aed.record_schema import RecordError
    from hil_runner.gate import GateParams, evaluate

    (tmp_path / "convert.json").write_text(content)
    hil = write(tmp_path / "hil.json", synthetic_record())
    with pytest.raises(RecordError, match=f"convert.json: {message}"):
        evaluate(hil, None, GateParams(), convert_record=tmp_path / "convert.json")


def test_gate_fails_closed_on_a_malformed_tflm_section(tmp_path: Path) -> None:
    assert not _gate(tmp_path, {"proof": "yes", "arena": 5})["passed"]
