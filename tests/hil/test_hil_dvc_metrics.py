"""`aed hil run --dvc-metrics`: the compared figures of the record, apart from its provenance (issue 17, point 8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.hil import HilParams
from components.hil import run as hil_run

COMPARED = {"board_acc", "agreement", "latency_ms", "ram_bytes", "flash_bytes"}


def _n6_params(vboard_factory, tmp_path: Path) -> HilParams:
    board = vboard_factory("stm32n6570-dk", slot=tmp_path / "slots" / "n6.tflite")
    inventory = tmp_path / "boards.yaml"
    inventory.write_text(
        f"boards:\n  - {{name: n6-virtual, profile: stm32n6570-dk, port: '{board.descriptor}', flash: none,"
        f" virtual: true, slot: slots/n6.tflite}}\n"
    )
    return HilParams(profile="stm32n6570-dk", farm="local", inventory=inventory, lock_dir=tmp_path / "locks",
                     latency_repeats=2, settle_s=0.05)  # fmt: skip


def test_hil_writes_the_compared_figures_of_its_record(
    vboard_factory, tiny_model, patch_store, tmp_path
) -> None:
    params = _n6_params(vboard_factory, tmp_path)
    record_path, figures_path = (
        tmp_path / "reports" / "hil_m.json",
        tmp_path / "reports" / "metrics" / "hil_m.json",
    )
    hil_run(params, patch_store, tiny_model, None, record_path, progress=False, dvc_metrics_path=figures_path)
    record, figures = json.loads(record_path.read_text()), json.loads(figures_path.read_text())
    assert set(figures) == COMPARED
    assert figures["flash_bytes"] == record["metrics"]["weights_bytes"]
    assert figures["ram_bytes"] == record["metrics"]["activations_bytes"]
    assert figures["latency_ms"] == round(record["metrics"]["latency_median_ms"], 2)
    assert "tools" in record and "created" in record  # provenance stays in the record only


@pytest.mark.parametrize("where", ["the record itself", "a folder"])
def test_a_figures_path_that_would_clobber_is_refused_before_the_job(
    tiny_model, patch_store, tmp_path, where: str
) -> None:
    record_path = tmp_path / "hil.json"
    figures_path = record_path if where == "the record itself" else tmp_path
    with pytest.raises(ValueError, match="--dvc-metrics"):
        hil_run(
            HilParams(),
            patch_store,
            tiny_model,
            None,
            record_path,
            progress=False,
            dvc_metrics_path=figures_path,
        )
    assert not record_path.exists()


@pytest.mark.slow
def test_the_board_stages_and_the_page_run_under_dvc(tiny_model, patch_store, tmp_path) -> None:
    """The project's own convert, hil, gate and report stages (their commands as dvc.yaml has them), on a tiny
    int8 model: `dvc metrics show` lists the compact figures only, and the page shows the gated run."""
    import shutil

    import yaml

    from tests.dvc_workspace import CODE_PACKAGES, REPO, sh
    from tests.test_reports import TERMINAL, _env, _width

    work = tmp_path / "work"
    work.mkdir()
    for package in CODE_PACKAGES:
        shutil.copytree(REPO / package, work / package, ignore=shutil.ignore_patterns("__pycache__"))
    # the board stages alone: no streaming evaluation or stream check here (gate.require_stream off)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["gate"]["require_stream"] = False
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    stages = pipeline["stages"]
    for name in ("convert", "hil", "gate"):
        stages[name]["foreach"] = {"yamnet_256": {"int8": "model_int8.tflite"}}
    gate = stages["gate"]["do"]
    gate["cmd"] = gate["cmd"].replace(
        " --stream-record reports/hil_stream_${key}.json --streaming-eval reports/${key}/streaming.json", ""
    )
    gate["deps"] = [d for d in gate["deps"] if "stream" not in d]
    # no promote stage here: the page waits for the gate instead
    deps = stages["report"]["deps"]
    stages["report"]["deps"] = [d for d in deps if not d.startswith("reports/promote_")] + [
        "reports/gate_yamnet_256.json"
    ]
    pipeline["stages"] = {k: v for k, v in stages.items() if k in ("convert", "hil", "gate", "report")}
    pipeline.pop("vars", None)
    (work / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    (work / "models" / "yamnet_256" / "int8" / "final").mkdir(parents=True)
    shutil.copyfile(tiny_model, work / "models" / "yamnet_256" / "int8" / "final" / "model_int8.tflite")
    shutil.copytree(patch_store, work / "artifacts" / "patches")
    env = _env()
    sh("git", "init", "-q", cwd=work, env=env)
    sh("dvc", "init", "-q", cwd=work, env=env)
    sh("dvc", "repro", "-q", "hil@yamnet_256", "convert@yamnet_256", cwd=work, env=env, timeout=600)
    # the first baseline, accepted explicitly (into the workspace's baselines/), then the gate and the page
    sh("aed", "gate", "--record", "reports/hil_yamnet_256.json", "--model-name", "yamnet_256", "--accept",
       cwd=work, env=env)  # fmt: skip
    sh("dvc", "repro", "-q", "report", cwd=work, env=env, timeout=600)

    shown = sh("dvc", "metrics", "show", cwd=work, env=env)
    assert _width(shown) <= TERMINAL, shown
    assert {line.split()[0] for line in shown.splitlines()[1:] if line.strip()} == {
        "reports/metrics/convert_yamnet_256.json", "reports/metrics/hil_yamnet_256.json"}  # fmt: skip
    page = (work / "reports" / "index.html").read_text()
    assert "yamnet_256: verdict" in page and "Not from this run" not in page
