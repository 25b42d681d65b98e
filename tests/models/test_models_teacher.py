from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aed.splits import Split
from aed.training.teacher import load_teacher


def _write_layout(root: Path, test: list[str]) -> None:
    root.mkdir(parents=True)
    layout = {"splits": {"fold-1": {"train": ["2-a", "3-a"], "val": ["4-a"], "test": test}}}
    (root / "splits.json").write_text(json.dumps(layout))


def test_teacher_with_other_test_clips_is_refused(tmp_path: Path) -> None:
    """A teacher trained on another split could have seen this split's test clips: refused."""
    _write_layout(tmp_path / "teacher", test=["5-a"])
    split = Split("fold-1", 1, ("2-a", "3-a"), ("4-a",), ("1-a",))
    with pytest.raises(ValueError, match="test clips differ"):
        load_teacher(tmp_path / "teacher", split)


def test_missing_teacher_is_named(tmp_path: Path) -> None:
    split = Split("fold-1", 1, ("2-a",), (), ("1-a",))
    with pytest.raises(FileNotFoundError, match="splits.json"):
        load_teacher(tmp_path / "nowhere", split)


def _mean_teacher(n_classes: int = 3):
    """A fixed 'teacher' whose softmax depends on the input's mean, so augmented inputs get other targets."""
    import keras

    patch = keras.Input((64, 96, 1))
    mean = keras.layers.GlobalAveragePooling2D()(patch)
    logits = keras.layers.Dense(n_classes, kernel_initializer="ones", bias_initializer="zeros")(mean)
    scale = keras.layers.Lambda(lambda z: z * keras.ops.arange(1.0, n_classes + 1.0))(logits)
    return keras.Model(patch, keras.layers.Softmax()(scale))


def test_teacher_labels_the_augmented_copy_it_is_given() -> None:
    from aed.models.runners import predict_keras as predict
    from aed.training import TrainParams
    from aed.training.trainer import training_copy

    teacher = _mean_teacher()
    rng = np.random.default_rng(0)
    clean = rng.normal(0.0, 1.0, (8, 64, 96, 1)).astype(np.float32)
    labels = np.eye(3, dtype=np.float32)[np.arange(8) % 3]
    params = TrainParams(teacher_weight=1.0, teacher_on_augmented=True, gaussian_noise=0.5, batch_size=2)
    patches, targets = training_copy(clean, labels, params, np.random.default_rng(1), teacher)
    assert not np.allclose(patches, clean)
    np.testing.assert_allclose(targets, predict(teacher, patches), atol=1e-6)
    assert not np.allclose(targets, predict(teacher, clean), atol=1e-3)

    half = TrainParams(teacher_weight=0.5, teacher_on_augmented=False, gaussian_noise=0.5)
    clean_taught = predict(teacher, clean)
    _, targets = training_copy(clean, labels, half, np.random.default_rng(1), teacher, clean_taught)
    np.testing.assert_allclose(targets, 0.5 * labels + 0.5 * clean_taught, atol=1e-6)


def test_input_mixup_mixes_patches_and_labels_alike() -> None:
    from aed.training import TrainParams
    from aed.training.trainer import training_copy

    clean = np.stack([np.full((64, 96, 1), float(i), np.float32) for i in range(6)])
    labels = np.eye(3, dtype=np.float32)[np.arange(6) % 3]
    params = TrainParams(input_mixup_alpha=0.4, gaussian_noise=0.0, volume_min=1.0, volume_max=1.0)
    patches, targets = training_copy(clean, labels, params, np.random.default_rng(3))
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)
    assert (targets.max(axis=1) >= 0.5 - 1e-6).all()  # the patch itself stays dominant
    mixed = targets.max(axis=1) < 1.0 - 1e-6
    assert mixed.any()
    # a patch made of constant i mixed with constant j at weight lam: its value is lam * i + (1 - lam) * j
    values = patches[:, 0, 0, 0]
    assert not np.allclose(values[mixed], np.arange(6)[mixed])


def test_teacher_with_the_same_clips_split_otherwise_between_train_and_val_is_accepted(
    tmp_path: Path,
) -> None:
    """A refit student trains on train + val: the teacher's train / val line may differ, its test clips not."""
    _write_layout(tmp_path / "teacher", test=["1-a"])
    split = Split("fold-1", 1, ("2-a", "3-a", "4-a"), (), ("1-a",))
    with pytest.raises(Exception) as raised:  # accepted: it then goes on to load the (absent) model file
        load_teacher(tmp_path / "teacher", split)
    assert "differ" not in str(raised.value)
    assert "model.keras" in str(raised.value)


def test_softened_teacher_is_its_softmax_at_that_temperature() -> None:
    from aed.training.teacher import soften

    logits = np.array([[4.0, 1.0, -2.0], [0.5, 0.5, 3.0]])
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = np.exp(logits / 3.0) / np.exp(logits / 3.0).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(soften(probabilities, 3.0), expected, rtol=1e-9)
    assert soften(probabilities, 1.0) is probabilities
    # a saturated row (zeros in float32) stays finite and keeps its argmax
    saturated = soften(np.array([[1.0, 0.0, 0.0]], np.float32), 4.0)
    assert np.isfinite(saturated).all() and saturated.argmax() == 0 and saturated[0, 0] < 1.0


def test_teacher_temperature_softens_the_distilled_targets() -> None:
    from aed.training import TrainParams
    from aed.training.teacher import soften
    from aed.training.trainer import training_copy

    teacher = _mean_teacher()
    rng = np.random.default_rng(0)
    clean = rng.normal(0.0, 1.0, (8, 64, 96, 1)).astype(np.float32)
    labels = np.eye(3, dtype=np.float32)[np.arange(8) % 3]
    taught = np.array([[0.9, 0.08, 0.02]] * 8, np.float32)
    params = TrainParams(teacher_weight=0.5, teacher_temperature=2.0, augment=False)
    _, targets = training_copy(clean, labels, params, np.random.default_rng(1), teacher, taught)
    np.testing.assert_allclose(targets, 0.5 * labels + 0.5 * soften(taught, 2.0), atol=1e-6)
    assert soften(taught, 2.0)[0, 0] < 0.9


def test_kd_targets_carry_labels_and_softened_teacher_side_by_side() -> None:
    from aed.training import TrainParams
    from aed.training.teacher import soften
    from aed.training.trainer import training_copy

    teacher = _mean_teacher()
    clean = np.zeros((4, 64, 96, 1), np.float32)
    labels = np.eye(3, dtype=np.float32)[np.arange(4) % 3]
    taught = np.array([[0.9, 0.08, 0.02]] * 4, np.float32)
    params = TrainParams(teacher_weight=0.9, teacher_temperature=2.0, augment=False, distillation="kd")
    _, targets = training_copy(clean, labels, params, np.random.default_rng(1), teacher, taught)
    assert targets.shape == (4, 6)
    np.testing.assert_allclose(targets[:, :3], labels)
    np.testing.assert_allclose(targets[:, 3:], soften(taught, 2.0), atol=1e-6)


def test_kd_loss_is_hintons_and_is_minimal_at_the_teachers_logits() -> None:
    import keras

    from aed.training.fit import kd_loss

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    temperature, weight = 3.0, 0.75
    teacher_logits = np.array([[3.0, 1.0, -1.0]])
    student_logits = np.array([[1.0, 2.0, 0.0]])
    labels = np.array([[1.0, 0.0, 0.0]])
    teacher_t = softmax(teacher_logits / temperature)
    y_true = np.concatenate([labels, teacher_t], axis=1).astype(np.float32)
    targets = keras.ops.convert_to_tensor(y_true)

    def value(loss, logits: np.ndarray) -> float:
        return float(np.asarray(loss(targets, softmax(logits).astype(np.float32)))[0])

    expected = (1 - weight) * -np.log(softmax(student_logits)[0, 0]) + weight * temperature**2 * -np.sum(
        teacher_t * np.log(softmax(student_logits / temperature))
    )
    assert value(kd_loss(3, weight, temperature), student_logits) == pytest.approx(expected, rel=1e-5)
    # With the soft term alone, the student is best when its logits are the teacher's, not when its own
    # softmax equals the softened teacher (what the "targets" mode teaches).
    soft_only = kd_loss(3, 1.0, temperature)
    assert value(soft_only, teacher_logits) < value(soft_only, teacher_logits / temperature) - 1e-3
    assert value(soft_only, teacher_logits) < value(soft_only, teacher_logits + np.array([[0.3, -0.3, 0.0]]))


# -- the teacher is an explicit input, never a folder found in the working directory ----------------------------
def _aed(*args: str) -> tuple[int, str]:
    import contextlib
    import io

    from components.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, err.getvalue()


def _stale_clone(root: Path) -> Path:
    """A working directory as `make demo` leaves it: a YAMNet-1024 train output of other splits in models/."""
    _write_layout(root / "models" / "yamnet_1024" / "float", test=["9-z"])
    return root


REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


def test_a_configured_teacher_that_is_not_given_fails_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """yamnet_256 is taught by yamnet_1024 (params.yaml): without --teacher, `aed train` refuses, even when the
    working directory holds a models/yamnet_1024/float (it is never looked up there)."""
    monkeypatch.chdir(_stale_clone(tmp_path))
    code, err = _aed(
        "train", "--params", str(REPO_PARAMS), "--model-name", "yamnet_256", "--patches", "nowhere"
    )
    assert code == 2, err
    assert "yamnet_1024 teaches yamnet_256 (train.teacher) but no teacher folder was given" in err
    assert "--teacher DIR" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_teacher_given_without_one_configured_is_refused(tmp_path: Path) -> None:
    teacher = tmp_path / "t"
    _write_layout(teacher, test=["1-a"])
    code, err = _aed(
        "train", "--params", str(REPO_PARAMS), "--model-name", "yamnet_1024", "--teacher", str(teacher),
        "--patches", str(tmp_path / "none"),
    )  # fmt: skip
    assert code == 2 and "train.teacher is null for yamnet_1024" in err, err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("yamnet_256", "train.overrides.yamnet_256.teacher: yamnet_256 cannot teach itself"),
        ("yamnet_2048", "train.overrides.yamnet_256.teacher: unknown model 'yamnet_2048'"),
    ],
)
def test_a_bad_teacher_name_is_refused(tmp_path: Path, override: str, expected: str) -> None:
    import yaml

    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["train"]["overrides"]["yamnet_256"]["teacher"] = override
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    code, err = _aed("train", "--params", str(tmp_path / "params.yaml"), "--model-name", "yamnet_256")
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err


def test_the_old_working_directory_key_is_refused(tmp_path: Path) -> None:
    import yaml

    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["train"]["overrides"]["yamnet_256"]["teacher_dir"] = "models/yamnet_1024/float"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    code, err = _aed("train", "--params", str(tmp_path / "params.yaml"), "--model-name", "yamnet_256")
    assert code == 2 and "teacher_dir" in err and len(err.strip().splitlines()) == 1, err


def test_a_teacher_folder_of_another_model_or_without_the_split_is_refused(tmp_path: Path) -> None:
    from aed.training.teacher import check_teacher_dir

    _write_layout(tmp_path / "t", test=["1-a"])
    layout = json.loads((tmp_path / "t" / "splits.json").read_text())
    (tmp_path / "t" / "splits.json").write_text(json.dumps({**layout, "model": "yamnet_256"}))
    with pytest.raises(ValueError, match="holds yamnet_256's models, but train.teacher is yamnet_1024"):
        check_teacher_dir(tmp_path / "t", "yamnet_1024", ["fold-1"])
    (tmp_path / "t" / "splits.json").write_text(json.dumps({**layout, "model": "yamnet_1024"}))
    check_teacher_dir(tmp_path / "t", "yamnet_1024", ["fold-1"])
    with pytest.raises(ValueError, match=r"the teacher has no split\(s\) \['final'\]"):
        check_teacher_dir(tmp_path / "t", "yamnet_1024", ["fold-1", "final"])
    with pytest.raises(FileNotFoundError, match="train the teacher model \\(yamnet_1024\\) first"):
        check_teacher_dir(tmp_path / "nowhere", "yamnet_1024", ["fold-1"])


def test_train_split_never_trains_silently_without_its_teacher() -> None:
    from aed.training import TrainParams
    from aed.training.trainer import train_split

    split = Split("fold-1", 1, ("2-a",), (), ("1-a",))
    with pytest.raises(ValueError, match="no teacher folder was given"):
        train_split(None, split, "yamnet_256", TrainParams(teacher="yamnet_1024"))  # type: ignore[arg-type]
