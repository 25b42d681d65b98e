"""`dvc exp run -S train.epochs=...` with the real DVC on the project's own dvc.yaml: patch -> train (both models,
YAMNet-256 distilled from YAMNet-1024) -> quantize -> evaluate on a 100-clip ESC-10 mirror, fold 1 only."""

import json

import pandas as pd
import pytest

from tests.dvc_workspace import dvc_workspace, sh, small_mirror

pytestmark = pytest.mark.slow
MODEL_STAGES = ("ingest", "validate", "patch", "train", "quantize", "evaluate")


@pytest.fixture
def experiment_repo(tmp_path, repo_dir, esc10_dir):
    def update(params: dict) -> None:
        params["validate"]["min_clips_per_class"] = 1
        params["train"].update(folds=[1], epochs=2, fine_tune_epochs=1, augment_copies=1, final_model=False)
        params["quantize"]["calibration_size"] = 16

    work = tmp_path / "work"
    # 2 clips per class and fold: fold 1 tests 20 clips, the other folds train and validate.
    mirror = small_mirror(esc10_dir, tmp_path / "mirror", 2, ["category", "fold"])
    env = dvc_workspace(work, repo_dir, mirror, MODEL_STAGES, update)
    sh("git", "add", "-A", cwd=work, env=env)
    sh("git", "commit", "-q", "-m", "baseline", cwd=work, env=env)
    return work, env


def test_exp_run_with_a_set_param_trains_that_many_epochs_and_reports_metrics(experiment_repo):
    work, env = experiment_repo
    sh("dvc", "exp", "run", "-n", "three-epochs", "-S", "train.epochs=3", cwd=work, env=env)

    for model in ("yamnet_256", "yamnet_1024"):
        record = json.loads((work / "models" / model / "float" / "train.json").read_text())
        assert record["params"]["epochs"] == 3
        history = pd.read_csv(work / "reports" / model / "history" / "fold-1.csv")
        assert (history["phase"] == "head").sum() == 3
    assert json.loads((work / "models" / "yamnet_256" / "float" / "train.json").read_text())["splits"][
        "fold-1"
    ]["distilled"]
    metrics = json.loads((work / "reports" / "metrics.json").read_text())
    for model, fmt in (("yamnet_256", "tflite"), ("yamnet_1024", "onnx_qdq")):
        accuracy = metrics[model][fmt]["clip_accuracy"]
        assert set(accuracy) == {"fold-1", "mean"} and 0.0 <= accuracy["mean"] <= 1.0
        assert metrics[model][fmt]["n_clips"] == 20  # fold 1: 2 clips x 10 classes

    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=work, env=env))
    experiments = [
        exp
        for commit in shown
        for exp in (commit.get("experiments") or [])
        if exp.get("name") == "three-epochs"
    ]
    assert experiments, shown
    revision = experiments[0]["revs"][0]["data"]
    assert revision["params"]["params.yaml"]["data"]["train"]["epochs"] == 3
    # DVC compares the compact figures (reports/metrics/), one file per model
    assert "int8_acc" in revision["metrics"]["reports/metrics/evaluate/yamnet_256.json"]["data"]
