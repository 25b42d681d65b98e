"""Kubeflow-local and `dvc repro` train the same models: the same params and seeds on the reduced configuration
give the same patches, splits, training figures, float weights, int8 model bytes and evaluation metrics.

The reduced configuration trains YAMNet-256 alone (models.names): its configured teacher, YAMNet-1024, is not
trained by either engine, and both say so and train it on the labels alone. (With both models listed, DVC passes
`--teacher models/yamnet_1024/float` and the DAG wires the teacher's train task into the student's:
tests/pipeline/test_pipeline_glue.py.)"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_pipeline_local import REDUCED, _reduced_mirror

from pipelines.cli import main as aed_main
from tests.dvc_workspace import dvc_workspace, sh

pytestmark = pytest.mark.slow
MODEL = "yamnet_256"
# what differs between two runs of the same work: times, and where each run keeps its files
UNCOMPARED = {"seconds", "load_s", "cache_s", "head_s", "fine_tune_s", "refit_s", "end_to_end_s", "path"}


def _reduced(params: dict) -> None:
    """REDUCED (section.key=value items) applied to a params dict."""
    for item in REDUCED:
        dotted, _, raw = item.partition("=")
        section, key = dotted.split(".")
        params[section][key] = yaml.safe_load(raw)


def _figures(record_path: Path) -> dict:
    """A step record without what legitimately differs between two runs (times, paths, input hashes, versions)."""
    record = json.loads(record_path.read_text())
    for key in ("created", "inputs", "tools", "seconds"):
        record.pop(key, None)
    for row in (record.get("splits") or {}).values():
        for key in UNCOMPARED & set(row):
            row.pop(key)
    return record


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _weights(path: Path) -> list[np.ndarray]:
    from aed.models.runners import load_keras

    return load_keras(path).get_weights()


def test_kubeflow_local_and_dvc_repro_give_the_same_models_and_metrics(
    tmp_path: Path, repo_dir: Path, esc10_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    mirror = _reduced_mirror(esc10_dir, tmp_path / "mirror", per_class=5)
    work = tmp_path / "dvc"
    stages = ("ingest", "validate", "patch", "train", "quantize")
    env = dvc_workspace(work, repo_dir, mirror, stages, _reduced)
    sh("dvc", "repro", "-q", f"quantize@{MODEL}", cwd=work, env=env, timeout=1200)
    # the evaluate stage's command for this one model (the stage itself evaluates every model)
    sh(
        "aed", "evaluate", "--model-name", MODEL, "--patches", "artifacts/patches", "--models-root", "models",
        "--reports", "reports", "--metrics", "reports/metrics.json", cwd=work, env=env,
    )  # fmt: skip

    # the same params file, run by Kubeflow's local runner from an unrelated working directory
    monkeypatch.setenv("AED_DATA_MIRROR", str(mirror))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    root = tmp_path / "root"
    args = [
        "pipeline",
        "run-local",
        "--params",
        str(work / "params.yaml"),
        "--root",
        str(root),
        "--until",
        "evaluate",
    ]
    assert aed_main(args) == 0, capsys.readouterr().err
    run = next(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert list(elsewhere.iterdir()) == []

    dvc_models, kfp = (
        work / "models",
        {MODEL: run / f"train-{MODEL.replace('_', '-')}"},
    )
    assert (work / "artifacts" / "patches" / "index.csv").read_text() == (
        run / "patch" / "patches" / "index.csv"
    ).read_text()
    for model, task_dir in kfp.items():
        assert json.loads((task_dir / "model" / "splits.json").read_text()) == json.loads(
            (dvc_models / model / "float" / "splits.json").read_text()
        )
        assert _figures(task_dir / "model" / "train.json") == _figures(
            dvc_models / model / "float" / "train.json"
        )
        for ours, theirs in zip(
            _weights(task_dir / "model" / "fold-1" / "model.keras"),
            _weights(dvc_models / model / "float" / "fold-1" / "model.keras"),
            strict=True,
        ):
            np.testing.assert_array_equal(ours, theirs)
    assert not (run / "train-yamnet-1024").exists() and not (dvc_models / "yamnet_1024").exists()
    for record in (kfp[MODEL] / "model" / "train.json", dvc_models / MODEL / "float" / "train.json"):
        assert _figures(record)["splits"]["fold-1"]["distilled"] is False

    quantized = run / f"quantize-{MODEL.replace('_', '-')}" / "quantized"
    assert _sha256(quantized / "fold-1" / "model_int8.tflite") == _sha256(
        dvc_models / MODEL / "int8" / "fold-1" / "model_int8.tflite"
    )
    assert _figures(quantized / "quantize.json") == _figures(dvc_models / MODEL / "int8" / "quantize.json")
    dvc_metrics = json.loads((work / "reports" / "metrics.json").read_text())[MODEL]
    kfp_metrics = json.loads((run / f"evaluate-{MODEL.replace('_', '-')}" / "metrics").read_text())[MODEL]
    assert {"float32", "tflite"} <= set(dvc_metrics)
    assert kfp_metrics == dvc_metrics
    shutil.rmtree(root)  # the models are large; the DVC workspace is removed with tmp_path
