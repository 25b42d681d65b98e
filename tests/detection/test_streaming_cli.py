"""`aed calibrate` then `aed evaluate --streaming` end to end, on a two-fold dataset of tones and the band model
(its ONNX form: no TensorFlow), and their bad inputs: one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
import yaml

from pipelines.cli import main
from tests.conftest import REPO
from tests.detection.conftest import CLASSES, tone_at, write_onnx

MODEL = "yamnet_1024"  # a known model name; its int8 files are the band model's ONNX form


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """raw/ clips (low and high tones in two folds), validated.csv, the model's splits.json and int8 files, and
    a params file with a short, quick soundscape set."""
    rows = []
    (tmp_path / "raw").mkdir()
    for fold in (1, 2):
        for i, (label, hz) in enumerate([("low", 300), ("low", 500), ("high", 3000), ("high", 5000)]):
            clip_id = f"{fold}-{i}"
            audio = np.concatenate([np.zeros(8000), tone_at(hz + 10 * fold, 1.5), np.zeros(8000)])
            soundfile.write(tmp_path / "raw" / f"{clip_id}.wav", audio, 16000)
            rows.append(
                {"clip_id": clip_id, "path": f"{clip_id}.wav", "label": label, "fold": fold, "problem": ""}
            )
    pd.DataFrame(rows).to_csv(tmp_path / "validated.csv", index=False)
    ids = {fold: [r["clip_id"] for r in rows if r["fold"] == fold] for fold in (1, 2)}
    splits = {f"fold-{k}": {"test_fold": k, "train": ids[3 - k], "val": [], "test": ids[k]} for k in (1, 2)}
    float_dir = tmp_path / "models" / MODEL / "float"
    float_dir.mkdir(parents=True)
    (float_dir / "splits.json").write_text(json.dumps({"class_names": CLASSES, "splits": splits}))
    for split in splits:
        (tmp_path / "models" / MODEL / "int8" / split).mkdir(parents=True)
        write_onnx(tmp_path / "models" / MODEL / "int8" / split / "model_qdq.onnx")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["validate"]["classes"] = CLASSES
    # The two-class band model has no background class: the noise bed is `low` or `high` to it, so it raises
    # false alarms at any threshold (the calibration says the target is not met), and every tone is found.
    params["streaming"].update(duration_s=20.0, eval_per_split=2, calibration_per_split=2, noise_dbfs=-40.0,
                               event_snr_db_min=6.0, event_snr_db_max=20.0,
                               sweep_thresholds=[0.5, 0.9])  # fmt: skip
    params["calibrate"].update(smoothing_grid=[1, 2], on_threshold_grid=[0.6, 0.9])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return tmp_path


def _aed(capsys, *argv) -> tuple[int, str, str]:
    code = main([*map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _common(ws: Path) -> list:
    return ["--params", ws / "params.yaml", "--model-name", MODEL, "--validated", ws / "validated.csv",
            "--raw-dir", ws / "raw", "--models-root", ws / "models"]  # fmt: skip


def test_calibrate_then_streaming_evaluation(workspace: Path, capsys) -> None:
    ws = workspace
    code, out, err = _aed(capsys, "calibrate", *_common(ws), "--soundscapes", ws / "cal", "--record",
                          ws / "calibrate.json", "--write-params")  # fmt: skip
    assert code == 0, err
    point = json.loads((ws / "models" / MODEL / "postprocess.json").read_text())
    assert yaml.safe_load((ws / "params.yaml").read_text())["detect"]["on_threshold"] == point["on_threshold"]
    record = json.loads((ws / "calibrate.json").read_text())
    assert record["miss_rate"] == 0.0  # tones: the band model finds every one
    assert record["meets_target"] is (record["false_alarms_per_hour"] <= 1.0)
    assert "does NOT meet" in out or record["meets_target"]
    # calibration soundscapes hold training clips only: fold-1's are fold 2's clips
    made = json.loads((ws / "cal" / "fold-1-train" / "soundscapes.json").read_text())
    assert {e["clip_id"][0] for events in made["events"].values() for e in events} == {"2"}

    code, out, err = _aed(capsys, "evaluate", "--streaming", *_common(ws), "--soundscapes", ws / "eval",
                          "--reports", ws / "reports", "--dvc-metrics", ws / "metrics.json")  # fmt: skip
    assert code == 0, err
    assert "event F1" in out
    metrics = json.loads((ws / "metrics.json").read_text())
    assert (
        set(metrics) == {"ev_f1", "fa_h", "miss"} and metrics["miss"] == 0.0 and 0.0 < metrics["ev_f1"] <= 1.0
    )
    full = json.loads((ws / "reports" / MODEL / "streaming.json").read_text())
    assert set(full["splits"]) == {"fold-1", "fold-2"} and full["operating_point"] == point
    assert full["source"].startswith("host, int8") and 0.0 < full["mean"]["psds"] <= 1.0
    held_out = json.loads((ws / "eval" / "fold-2-test" / "soundscapes.json").read_text())
    assert {e["clip_id"][0] for events in held_out["events"].values() for e in events} == {"2"}
    det = json.loads((ws / "reports" / MODEL / "streaming_det.json").read_text())
    assert {row["class"] for row in det} == set(CLASSES)
    scores = json.loads((ws / "reports" / MODEL / "streaming_scores.json").read_text())
    assert scores and {"time_s", "score", "class"} <= set(scores[0])
    for image in ("streaming_det.png", "streaming_scores.png"):
        assert (ws / "reports" / MODEL / image).read_bytes()[:4] == b"\x89PNG"


def test_an_output_folder_given_as_the_operating_point_file_is_one_line(workspace: Path, capsys) -> None:
    code, _, err = _aed(
        capsys, "calibrate", *_common(workspace), "--soundscapes", workspace / "s", "--out", workspace
    )
    assert code == 2 and "is a folder, expected the operating point file" in err


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no splits", "splits.json: not found"),
        ("no model", "expected one int8 model file, found 0"),
        ("class count", "has 3 outputs but"),
        ("missing clip", "not in the validated table"),
        ("bad operating point", "postprocess.json.off_threshold"),
        ("bad param", "streaming.duration_s"),
        ("no event fits", "no event fits: streaming.duration_s 5 s"),
        ("empty table", "validated.csv: not a readable CSV table"),
    ],
)
def test_bad_inputs_are_one_line(workspace: Path, capsys, breakage: str, message: str) -> None:
    ws = workspace
    int8 = ws / "models" / MODEL / "int8"
    if breakage == "no splits":
        (ws / "models" / MODEL / "float" / "splits.json").unlink()
    elif breakage == "no model":
        (int8 / "fold-2" / "model_qdq.onnx").unlink()
    elif breakage == "class count":
        write_onnx(int8 / "fold-1" / "model_qdq.onnx", n_outputs=3)
    elif breakage == "missing clip":
        table = pd.read_csv(ws / "validated.csv")
        table[table["clip_id"] != "1-0"].to_csv(ws / "validated.csv", index=False)
    elif breakage == "bad operating point":
        bad = {"smoothing_windows": 1, "on_threshold": 0.5, "off_threshold": 0.9, "min_duration_s": 0,
               "merge_gap_s": 0}  # fmt: skip
        (ws / "models" / MODEL / "postprocess.json").write_text(json.dumps(bad))
    elif breakage == "no event fits":  # 5 s cannot hold a 1.5 s tone with 2 s of noise on each side
        text = (ws / "params.yaml").read_text().replace("duration_s: 20.0", "duration_s: 5.0")
        text = text.replace("events_per_minute: 6.0", "events_per_minute: 24.0")
        (ws / "params.yaml").write_text(text.replace("min_gap_s: 1.0", "min_gap_s: 2.0"))
    elif breakage == "empty table":
        (ws / "validated.csv").write_text("")
    else:
        text = (ws / "params.yaml").read_text().replace("duration_s: 20.0", "duration_s: 1.0")
        (ws / "params.yaml").write_text(text)
    code, _, err = _aed(capsys, "evaluate", "--streaming", *_common(ws), "--soundscapes", ws / "eval",
                        "--reports", ws / "reports")  # fmt: skip
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_the_two_metrics_options_are_not_mixed_up(workspace: Path, capsys) -> None:
    code, _, err = _aed(
        capsys, "evaluate", "--streaming", *_common(workspace), "--dvc-metrics-dir", workspace / "m"
    )
    assert code == 2 and "--dvc-metrics FILE" in err
    code, _, err = _aed(
        capsys, "evaluate", "--params", workspace / "params.yaml", "--dvc-metrics", workspace / "m"
    )
    assert code == 2 and "is for --streaming" in err
