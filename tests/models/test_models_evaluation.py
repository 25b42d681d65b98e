"""Clip-level scoring, and the evaluate step: each model's float and int8 folders given explicitly (the CLI
builds them from --models-root, the Kubeflow task from its two artifacts), bad inputs refused in one line."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import components.evaluate as step
from aed.evaluation import (
    EvaluateParams,
    EvaluationError,
    ModelFolders,
    agreement,
    clip_predictions,
    confusion_rows,
    per_class_report,
    score,
)
from components.cli import main as aed_main
from tests.kfp_artifacts import FakeArtifact
from tests.models.conftest import synthetic_store

N_CLASSES = 3


def test_clip_score_is_summed_softmax_not_a_vote() -> None:
    # Two patches vote class 0 weakly, one patch says class 1 strongly: the sum picks class 1.
    probs = np.array([[0.55, 0.45], [0.55, 0.45], [0.0, 1.0]])
    true, pred, clips = clip_predictions(probs, np.array(["c", "c", "c"]), np.array([1, 1, 1]))
    assert list(pred) == [1] and list(true) == [1] and list(clips) == ["c"]


def test_ties_go_to_the_lowest_class_index() -> None:
    probs = np.array([[0.2, 0.4, 0.4], [0.2, 0.4, 0.4]])
    _, pred, _ = clip_predictions(probs, np.array(["x", "x"]), np.array([2, 2]))
    assert list(pred) == [1]


def test_score_and_confusion() -> None:
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    result = score(probs, np.array(["a", "a", "b", "b"]), np.array([0, 0, 1, 1]), 2)
    assert result.patch_accuracy == 0.75
    assert result.clip_accuracy == 1.0  # b: 0.9 vs 1.1 -> class 1
    assert result.confusion.tolist() == [[1, 0], [0, 1]]
    assert (result.n_clips, result.n_patches) == (2, 4)
    report = per_class_report(np.array([[3, 1], [0, 4]]), ["x", "y"])
    assert report["x"]["precision"] == 1.0 and report["x"]["recall"] == 0.75
    assert report["y"]["precision"] == 0.8
    assert len(confusion_rows(np.array([[3, 1], [0, 4]]), ["x", "y"])) == 8


def test_mixed_labels_in_a_clip_are_refused() -> None:
    with pytest.raises(EvaluationError, match="different labels"):
        clip_predictions(np.eye(2), np.array(["a", "a"]), np.array([0, 1]))


def test_agreement() -> None:
    a = np.array([[0.9, 0.1], [0.4, 0.6]])
    b = np.array([[0.8, 0.2], [0.6, 0.4]])
    result = agreement(a, b)
    assert result.top1_agreement == 0.5
    assert 0.8 < result.mean_cosine < 1.0
    assert list(result.to_dict()) == ["top1_agreement", "mean_cosine", "max_abs_diff"]


# -- the evaluate step on hand-built models ---------------------------------------------------------------------


def _band_model(mistaken: bool, outputs: int = N_CLASSES):
    """A model that reads the synthetic store's class bands (rows 0-20, 21-41, 42-62 raised from -6 to -1): twice
    each band's mean is its class's logit. `mistaken`: class 0's band also raises the last class's logit, so
    class-0 clips are taken for the last class and the others stay right."""
    import keras

    model = keras.Sequential([
        keras.Input((64, 96, 1)),
        keras.layers.AveragePooling2D(pool_size=(21, 96)),
        keras.layers.Flatten(),
        keras.layers.Dense(outputs, activation="softmax"),
    ])  # fmt: skip
    weights, bias = np.eye(3, outputs, dtype=np.float32) * 2.0, np.zeros(outputs, np.float32)
    if mistaken:
        weights[0, -1], bias[-1] = 2.0, 13.0
    model.layers[-1].set_weights([weights, bias])
    return model


def _models_root(root: Path, store_dir: Path, name: str = "yamnet_256", outputs: int = N_CLASSES) -> Path:
    """<root>/<name>/float/{fold-1,fold-2,final}/model.keras + splits.json, int8/<split>/model_int8.tflite."""
    from aed.patchstore import load_patch_store
    from aed.quantize import to_int8_tflite

    store = load_patch_store(store_dir)
    clips = sorted(set(store.index["clip_id"]))
    splits = {}
    for number, split in enumerate(("fold-1", "fold-2", "final"), start=1):
        test = [c for c in clips if c.startswith(f"{number}-")] if split != "final" else []
        splits[split] = {"train": [c for c in clips if c not in test], "val": [], "test": test}
        model = _band_model(mistaken=split == "fold-2", outputs=outputs)
        (root / name / "float" / split).mkdir(parents=True)
        model.save(root / name / "float" / split / "model.keras")
        target = root / name / "int8" / split / "model_int8.tflite"
        with warnings.catch_warnings():  # the converter warns about input statistics it does not need
            warnings.simplefilter("ignore")
            to_int8_tflite(model, store.patches(store.index.iloc[:8]), target)
    layout = {"split": "folds", "splits": splits}
    (root / name / "float" / "splits.json").write_text(json.dumps(layout))
    return root


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_store(tmp_path_factory.mktemp("store") / "patches", n_classes=N_CLASSES, folds=2)


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory, store_dir: Path) -> Path:
    return _models_root(tmp_path_factory.mktemp("models"), store_dir)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _params_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "params.yaml"
    path.write_text("models:\n  names: [yamnet_256]\n" + extra)
    return path


def test_run_reads_each_models_own_folders_and_writes_what_the_cli_writes(
    store_dir: Path, models_root: Path, tmp_path: Path
) -> None:
    # float and int8 folders anywhere (as Kubeflow artifacts are), under no models root
    float_dir, int8_dir = tmp_path / "artifact-a", tmp_path / "elsewhere" / "artifact-b"
    shutil.copytree(models_root / "yamnet_256" / "float", float_dir)
    shutil.copytree(models_root / "yamnet_256" / "int8", int8_dir)
    folders = ModelFolders("yamnet_256", float_dir, int8_dir)
    metrics = step.run(EvaluateParams(), store_dir, [folders], tmp_path / "explicit", tmp_path / "m.json")

    by_format = metrics["yamnet_256"]
    assert list(by_format) == ["float32", "tflite", "int8_vs_float"]
    assert set(by_format["float32"]["clip_accuracy"]) == {"fold-1", "fold-2", "mean"}
    assert by_format["float32"]["n_clips"] == 12 and by_format["float32"]["split"] == "folds"
    # fold-2's model takes class 0 for class 2, fold-1's makes no mistake
    assert by_format["float32"]["clip_accuracy"]["fold-1"] == 1.0
    assert by_format["float32"]["clip_accuracy"]["fold-2"] == pytest.approx(4 / 6)
    assert list(by_format["int8_vs_float"]["per_split"]) == ["fold-1", "fold-2"]
    record = json.loads((tmp_path / "explicit" / "evaluate.json").read_text())
    assert list(record["inputs"]) == ["yamnet_256_splits"]

    # the CLI builds the same folders from --models-root: the same bytes in every output but the run's record
    code = aed_main(["evaluate", "--params", str(_params_file(tmp_path)), "--patches", str(store_dir),
                     "--models-root", str(models_root), "--reports", str(tmp_path / "cli"),
                     "--metrics", str(tmp_path / "cli.json")])  # fmt: skip
    assert code == 0
    assert (tmp_path / "cli.json").read_bytes() == (tmp_path / "m.json").read_bytes()
    assert _files(tmp_path / "cli" / "yamnet_256") == _files(tmp_path / "explicit" / "yamnet_256")
    assert set(_files(tmp_path / "cli" / "yamnet_256")) == {
        "evaluation.json", "confusion_float32.json", "confusion_float32.png", "confusion_tflite.json",
        "confusion_tflite.png",
    }  # fmt: skip


def _repo_params() -> dict[str, Any]:
    return yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())


def test_the_step_reads_the_evaluate_section_only() -> None:
    # `models` is a list of inputs, not the params.yaml section of the same name
    from components.taskio import params_sections, step_args

    assert params_sections(step) == {"params": ("evaluate", EvaluateParams)}
    assert step_args(_repo_params(), step) == {"params": EvaluateParams()}


def test_task_body_passes_its_artifacts_without_linking_them(
    store_dir: Path, models_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from components.evaluate.task import evaluate as task

    def no_links(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the evaluate task made a link")

    monkeypatch.setattr(Path, "symlink_to", no_links)
    outputs = {
        name: FakeArtifact(tmp_path / "out" / name) for name in ("details", "metrics", "confusion", "report")
    }
    task(
        params=json.dumps(_repo_params()), model_name="yamnet_256", patches=FakeArtifact(store_dir),
        model=FakeArtifact(models_root / "yamnet_256" / "float"), quantized=FakeArtifact(models_root / "yamnet_256" / "int8"),
        **outputs,
    )  # fmt: skip
    assert outputs["metrics"].metadata["float32.clip_accuracy.fold-1"] == 1.0
    assert outputs["confusion"].metadata["format"] == "tflite"
    written = json.loads(Path(outputs["metrics"].path).read_text())
    assert list(written["yamnet_256"]) == ["float32", "tflite", "int8_vs_float"]
    assert (Path(outputs["details"].path) / "yamnet_256" / "confusion_tflite.png").is_file()


def _cli(
    tmp_path: Path, store_dir: Path, models_root: Path, capsys: pytest.CaptureFixture
) -> tuple[int, str]:
    code = aed_main(["evaluate", "--params", str(_params_file(tmp_path)), "--patches", str(store_dir),
                     "--models-root", str(models_root), "--reports", str(tmp_path / "reports"),
                     "--metrics", str(tmp_path / "reports" / "metrics.json")])  # fmt: skip
    return code, capsys.readouterr().err


BAD_LAYOUTS = {
    "not JSON": "{ truncated",
    "a list": "[]",
    "no splits key": '{"split": "folds"}',
    "no split key": '{"splits": {"fold-1": {"test": ["1-class_0-0"]}}}',
    "splits a list": '{"split": "folds", "splits": [1, 2]}',
    "split without test": '{"split": "folds", "splits": {"fold-1": {"train": []}}}',
    "test a string": '{"split": "folds", "splits": {"fold-1": {"test": "1-class_0-0"}}}',
    "test of numbers": '{"split": "folds", "splits": {"fold-1": {"test": [1, 2]}}}',
    "no test clips": '{"split": "folds", "splits": {"fold-1": {"test": []}}}',
    "clips not in the store": '{"split": "folds", "splits": {"fold-1": {"test": ["1-class_0-0", "9-gone"]}}}',
}


@pytest.mark.parametrize("text", list(BAD_LAYOUTS.values()), ids=list(BAD_LAYOUTS))
def test_a_bad_splits_json_is_one_line_naming_it(
    store_dir: Path, models_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, text: str
) -> None:
    root = tmp_path / "models"
    shutil.copytree(models_root, root)
    (root / "yamnet_256" / "float" / "splits.json").write_text(text)
    code, err = _cli(tmp_path, store_dir, root, capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{root / 'yamnet_256' / 'float' / 'splits.json'}:" in err
    assert not (tmp_path / "reports" / "metrics.json").exists()


def test_missing_inputs_are_one_line_naming_them(
    store_dir: Path, models_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = tmp_path / "models"
    shutil.copytree(models_root, root)
    (root / "yamnet_256" / "int8" / "fold-2" / "model_int8.tflite").unlink()
    code, err = _cli(tmp_path, store_dir, root, capsys)
    assert code == 2 and f"{root / 'yamnet_256' / 'int8' / 'fold-2'}: no quantized model" in err
    # evaluate.int8: false does not need them
    params = _params_file(tmp_path, "evaluate:\n  int8: false\n")
    assert aed_main(["evaluate", "--params", str(params), "--patches", str(store_dir), "--models-root", str(root),
                     "--reports", str(tmp_path / "r2"), "--metrics", str(tmp_path / "r2.json")]) == 0  # fmt: skip
    assert list(json.loads((tmp_path / "r2.json").read_text())["yamnet_256"]) == ["float32"]
    shutil.rmtree(root / "yamnet_256" / "float")
    code, err = _cli(tmp_path, store_dir, root, capsys)
    assert code == 2 and f"{root / 'yamnet_256' / 'float' / 'splits.json'}: missing" in err


def test_a_model_whose_outputs_are_not_the_store_classes_is_refused(
    store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = _models_root(tmp_path / "models", store_dir, outputs=N_CLASSES + 1)
    code, err = _cli(tmp_path, store_dir, root, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "fold-1/model.keras: outputs of shape (4,), but the patch store has 3 classes" in err
    with pytest.raises(EvaluationError, match="has 3 classes"):
        step.run(
            EvaluateParams(int8=False), store_dir, [ModelFolders.under(root, "yamnet_256")], tmp_path / "r"
        )


@pytest.mark.parametrize("name", ["", ".", "..", "../escape", "a/b"])
def test_a_model_name_is_a_plain_folder_name(name: str, tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="expected a plain folder name"):
        ModelFolders(name, tmp_path / "f", tmp_path / "q")


def test_a_model_given_twice_is_refused_before_any_work(
    store_dir: Path, models_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = aed_main(["evaluate", "--params", str(_params_file(tmp_path)), "--model-name", "yamnet_256",
                     "--model-name", "yamnet_256", "--patches", str(store_dir), "--models-root", str(models_root),
                     "--reports", str(tmp_path / "reports")])  # fmt: skip
    assert code == 2 and "['yamnet_256'] given more than once" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()
