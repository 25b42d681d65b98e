"""train -> quantize -> evaluate on a tiny synthetic patch store, through the component entry points."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import components.evaluate as evaluate
import components.quantize as quantize
import components.train as train
from aed.evaluation import EvaluateParams, ModelFolders
from aed.models.runners import ModelFileError, load_keras, predict_onnx, predict_tflite
from aed.quantize import QuantizeParams
from aed.training import TrainParams


def _params(**extra) -> TrainParams:
    base = {"folds": [2], "epochs": 3, "augment_copies": 2, "batch_size": 8, "learning_rate": 0.01}
    return TrainParams(**{"final_model": True, **base, **extra})


@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["yamnet_256", "yamnet_1024"])
def test_train_quantize_evaluate(yamnet_dir: Path, tiny_store: Path, tmp_path: Path, model_name: str) -> None:
    root = tmp_path / "models" / model_name
    params = _params(
        fine_tune_blocks=1, fine_tune_epochs=1, spec_time_masks=1, spec_time_width=8, mixup_alpha=0.2
    )
    record = train.run(params, model_name, tiny_store, root / "float", tmp_path / "reports" / model_name)
    assert set(record["splits"]) == {"fold-2", "final"}
    assert (root / "float" / "fold-2" / "model.keras").is_file()
    history = (tmp_path / "reports" / model_name / "history" / "fold-2.csv").read_text().splitlines()
    assert history[0].startswith("phase,epoch,loss,accuracy,val_loss,val_accuracy")
    assert len(history) == 1 + 3 + 1  # header, 3 head epochs, 1 fine-tuning epoch
    layout = json.loads((root / "float" / "splits.json").read_text())
    fold = layout["splits"]["fold-2"]
    assert all(clip.startswith("2-") for clip in fold["test"])
    assert not any(clip.startswith("2-") for clip in fold["train"] + fold["val"])

    q = quantize.run(
        QuantizeParams(calibration_size=16), model_name, tiny_store, root / "float", root / "int8"
    )
    assert q["splits"]["fold-2"]["n_calibration"] == 16
    assert q["splits"]["fold-2"]["input_scale"] > 0

    folders = [ModelFolders.under(tmp_path / "models", model_name)]
    metrics = evaluate.run(EvaluateParams(), tiny_store, folders, tmp_path / "reports")
    int8_format = "tflite" if model_name == "yamnet_256" else "onnx_qdq"
    by_format = metrics[model_name]
    assert set(by_format) == {"float32", int8_format, "int8_vs_float"}
    for fmt in ("float32", int8_format):
        assert by_format[fmt]["n_clips"] == 6 and by_format[fmt]["split"] == "folds"
        assert set(by_format[fmt]["clip_accuracy"]) == {"fold-2", "mean"}
    # the synthetic classes are separable: the float model must beat chance (1/3) clearly
    assert by_format["float32"]["clip_accuracy"]["mean"] >= 0.8
    assert by_format["int8_vs_float"]["top1_agreement"] >= 0.8
    assert (tmp_path / "reports" / "metrics.json").is_file()
    assert (tmp_path / "reports" / model_name / f"confusion_{int8_format}.png").stat().st_size > 1000


@pytest.mark.slow
def test_training_is_repeatable(yamnet_dir: Path, tiny_store: Path, tmp_path: Path) -> None:
    params = _params(final_model=False)
    first = train.run(params, "yamnet_256", tiny_store, tmp_path / "a", tmp_path / "ra")
    second = train.run(params, "yamnet_256", tiny_store, tmp_path / "b", tmp_path / "rb")
    assert first["splits"]["fold-2"]["val_accuracy"] == second["splits"]["fold-2"]["val_accuracy"]
    ha = (tmp_path / "ra" / "history" / "fold-2.csv").read_text().splitlines()
    hb = (tmp_path / "rb" / "history" / "fold-2.csv").read_text().splitlines()
    strip = [",".join(line.split(",")[:-1]) for line in ha]  # drop the wall-time column
    assert strip == [",".join(line.split(",")[:-1]) for line in hb]


def test_corrupted_quantized_models_are_refused(tmp_path: Path) -> None:
    patches = np.zeros((1, 64, 96, 1), np.float32)
    bad_tflite, bad_onnx = tmp_path / "m.tflite", tmp_path / "m.onnx"
    bad_tflite.write_bytes(b"TFL3" + b"\x00" * 100)
    bad_onnx.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ModelFileError, match="m.tflite"):
        predict_tflite(bad_tflite, patches)
    with pytest.raises(ModelFileError, match="m.onnx"):
        predict_onnx(bad_onnx, patches)
    with pytest.raises(ModelFileError, match="missing or empty"):
        predict_tflite(tmp_path / "absent.tflite", patches)


@pytest.mark.slow
def test_refit_retrains_on_train_and_validation_for_the_selected_epochs(
    yamnet_dir: Path, tiny_store: Path, tmp_path: Path
) -> None:
    import pandas as pd

    params = _params(final_model=False, refit=True, fine_tune_blocks=1, fine_tune_epochs=2)
    record = train.run(params, "yamnet_256", tiny_store, tmp_path / "refit", tmp_path / "r1")
    row = record["splits"]["fold-2"]
    assert row["refit"] is True
    history = pd.read_csv(tmp_path / "r1" / "history" / "fold-2.csv")
    selection = history[history["phase"] == "head"]
    best_head = selection.sort_values(
        ["val_accuracy", "val_loss"], ascending=[False, True], kind="stable"
    ).iloc[0]
    assert row["head_epochs"] == best_head["epoch"]  # fine-tuning starts from the best head epoch
    if row["best_phase"] == "head":
        assert (row["head_epochs"], row["fine_tune_epochs"]) == (row["best_epoch"], 0)
    else:
        assert row["fine_tune_epochs"] == row["best_epoch"] - len(selection)
    refit = history[history["phase"].str.startswith("refit_")]
    assert (refit["phase"] == "refit_head").sum() == row["head_epochs"]
    assert (refit["phase"] == "refit_fine_tune").sum() == row["fine_tune_epochs"]
    assert refit["val_accuracy"].isna().all()  # the validation clips are training clips now
    assert refit["epoch"].min() > history[~history["phase"].str.startswith("refit_")]["epoch"].max()

    plain = train.run(
        _params(final_model=False), "yamnet_256", tiny_store, tmp_path / "plain", tmp_path / "r2"
    )
    assert plain["splits"]["fold-2"]["refit"] is False
    probe = np.random.default_rng(0).normal(-6.0, 1.0, (4, 64, 96, 1)).astype(np.float32)
    refit_out = load_keras(tmp_path / "refit" / "fold-2" / "model.keras").predict(probe, verbose=0)
    plain_out = load_keras(tmp_path / "plain" / "fold-2" / "model.keras").predict(probe, verbose=0)
    assert not np.allclose(refit_out, plain_out, atol=1e-4)


@pytest.mark.slow
def test_distillation_trains_with_either_loss(yamnet_dir: Path, tiny_store: Path, tmp_path: Path) -> None:
    import pandas as pd

    teacher_dir = tmp_path / "teacher"
    train.run(_params(final_model=False), "yamnet_1024", tiny_store, teacher_dir, tmp_path / "rt")
    outputs = {}
    for mode in ("targets", "kd"):
        params = _params(
            final_model=False,
            teacher="yamnet_1024",
            teacher_weight=0.9,
            teacher_temperature=2.0,
            distillation=mode,
        )
        record = train.run(
            params, "yamnet_256", tiny_store, tmp_path / mode, tmp_path / f"r{mode}", teacher_dir=teacher_dir
        )
        assert record["splits"]["fold-2"]["distilled"] is True
        history = pd.read_csv(tmp_path / f"r{mode}" / "history" / "fold-2.csv")
        assert history["accuracy"].between(0.0, 1.0).all()  # against the label columns only
        model = load_keras(tmp_path / mode / "fold-2" / "model.keras")
        assert model.output_shape[-1] == 3
        outputs[mode] = model.predict(np.zeros((1, 64, 96, 1), np.float32), verbose=0)
    assert not np.allclose(outputs["targets"], outputs["kd"], atol=1e-4)


@pytest.mark.slow
def test_training_without_a_validation_part_keeps_the_averaged_fine_tuning(
    yamnet_dir: Path, tiny_store: Path, tmp_path: Path
) -> None:
    import pandas as pd

    params = _params(
        final_model=False,
        validation_fraction=0.0,
        average_last_epochs=2,
        fine_tune_blocks=1,
        fine_tune_epochs=2,
    )
    train.run(params, "yamnet_256", tiny_store, tmp_path / "m", tmp_path / "r")
    # strict JSON (no NaN): nothing was validated, so the figures are null, not an epoch number
    record = json.loads((tmp_path / "m" / "train.json").read_text(), parse_constant=pytest.fail)
    row = record["splits"]["fold-2"]
    assert row["n_val_clips"] == 0
    assert row["val_accuracy"] is None and row["val_clip_accuracy"] is None
    assert row["best_phase"] == "fine_tune" and row["best_epoch"] == 5  # 3 head epochs, then 2 fine-tuning
    layout = json.loads((tmp_path / "m" / "splits.json").read_text())["splits"]["fold-2"]
    n_clips = pd.read_csv(tiny_store / "index.csv")["clip_id"].nunique()
    assert layout["val"] == [] and len(layout["train"]) + len(layout["test"]) == n_clips


@pytest.mark.slow
def test_weight_averaging_in_both_phases(yamnet_dir: Path, tiny_store: Path, tmp_path: Path) -> None:
    import pandas as pd

    params = _params(final_model=False, average_last_epochs=2, fine_tune_blocks=1, fine_tune_epochs=3)
    record = train.run(params, "yamnet_256", tiny_store, tmp_path / "swa", tmp_path / "r")
    row = record["splits"]["fold-2"]
    history = pd.read_csv(tmp_path / "r" / "history" / "fold-2.csv")
    assert list(history["phase"]) == ["head"] * 3 + ["head_average"] + ["fine_tune"] * 3 + [
        "fine_tune_average"
    ]
    assert list(history["epoch"]) == [1, 2, 3, 3, 4, 5, 6, 6]  # an average carries its phase's last epoch
    assert row["head_epochs"] == 3  # no epoch selection: the head ran, and is averaged over, all its epochs
    kept = history[history["phase"] == f"{row['best_phase']}_average"].iloc[0]
    assert row["val_accuracy"] == pytest.approx(kept["val_accuracy"])
    assert row["fine_tune_epochs"] == (3 if row["best_phase"] == "fine_tune" else 0)


@pytest.mark.slow
def test_parallel_split_jobs_train_every_split_like_one_process(
    yamnet_dir: Path, tiny_store: Path, tmp_path: Path
) -> None:
    import pandas as pd

    params = _params(folds=[1, 2], final_model=True)
    one = train.run(params, "yamnet_256", tiny_store, tmp_path / "one", tmp_path / "r1")
    two = train.run(
        dataclasses.replace(params, jobs=2), "yamnet_256", tiny_store, tmp_path / "two", tmp_path / "r2"
    )
    assert list(two["splits"]) == ["fold-1", "fold-2", "final"]  # the record keeps the splits' order
    for name in two["splits"]:
        assert (tmp_path / "two" / name / "model.keras").is_file()
        histories = [pd.read_csv(tmp_path / r / "history" / f"{name}.csv") for r in ("r1", "r2")]
        # Seeded per split: a worker process trains the split as this process does (up to thread-count rounding).
        assert list(histories[0]["epoch"]) == list(histories[1]["epoch"])
        np.testing.assert_allclose(histories[0]["val_loss"], histories[1]["val_loss"], rtol=1e-3, atol=1e-4)
        assert one["splits"][name]["best_epoch"] == two["splits"][name]["best_epoch"]


def test_a_failing_split_job_names_the_split(tmp_path: Path) -> None:
    from aed.splits import Split
    from aed.training import ModelSource
    from aed.training.jobs import SplitJob, run_split_jobs

    split = Split("fold-9", 9, ("a",), ("b",), ("c",))
    job = SplitJob(tmp_path / "absent", split, "yamnet_256", _params(), ModelSource(), tmp_path, tmp_path)
    with pytest.raises(RuntimeError, match="yamnet_256 fold-9 failed.*absent"):
        run_split_jobs([job, dataclasses.replace(job, split=Split("fold-8", 8, (), (), ()))], 2)
