"""A background class for any layout (aed.datasets.background): classes of the data named as background, or a
folder of non-target audio, sampled as FSD50K's `other`; the validate step adds it; detect treats it as no event."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

from aed.datasets.background import add_background
from aed.datasets.errors import DatasetError
from aed.datasets.ingest import describe_clip
from aed.labels import BACKGROUND_LABEL, background_classes
from aed.params import ParamsError, from_dict
from aed.validation.validate import ValidateParams

TARGETS = ["crying_baby", "dog", "rooster"]
CLASSES = sorted([*TARGETS, BACKGROUND_LABEL])


def _manifest(counts: dict[str, int]) -> pd.DataFrame:
    rows = []
    for label, count in counts.items():
        for number in range(count):
            rows.append({"clip_id": f"{number + 1}-{label}", "path": f"audio/{number + 1}-{label}.wav",
                         "label": label, "fold": number % 4 + 1, "split": "", "duration_s": 5.0,
                         "sample_rate": 44100, "channels": 1, "sha256": f"{label}{number}", "problem": ""})  # fmt: skip
    return pd.DataFrame(rows)


ESC = {"crying_baby": 8, "dog": 8, "rooster": 8, "rain": 6, "clock_tick": 3, "chainsaw": 4}


def test_named_classes_become_one_background_class_sampled_per_source() -> None:
    manifest = _manifest(ESC)
    plan = add_background(manifest, Path("."), CLASSES, ["rain", "clock_tick"], None, None, describe_clip)
    out = plan.manifest
    background = out[out["label"] == BACKGROUND_LABEL]
    # a mean target class (24 clips / 3) spread over 2 sources: 4 clips from each
    assert plan.drawn == {"rain": 4, "clock_tick": 4} and len(background) == 8
    origin = background["path"].str.extract(r"-(\w+)\.wav$")[0]
    assert origin.value_counts().to_dict() == {"rain": 4, "clock_tick": 4}
    # rain has 6 clips: 4 distinct ones; clock_tick has 3: drawn with replacement, every draw its own clip id
    assert background[origin == "rain"]["path"].nunique() == 4
    assert background[origin == "clock_tick"]["path"].nunique() <= 3
    assert out["clip_id"].is_unique
    # each draw keeps its clip's fold (no leak across cross-validation folds)
    source_folds = dict(zip(manifest["path"], manifest["fold"], strict=True))
    assert all(source_folds[p] == f for p, f in zip(background["path"], background["fold"], strict=True))
    # the other labels are left out, and counted; the targets are untouched
    assert plan.left_out == {"chainsaw": 4} and set(out["label"]) == set(CLASSES)
    assert len(out[out["label"].isin(TARGETS)]) == 24
    assert list(out.columns) == list(manifest.columns)
    # seeded: the same draws every time
    again = add_background(manifest, Path("."), CLASSES, ["rain", "clock_tick"], None, None, describe_clip)
    pd.testing.assert_frame_equal(out, again.manifest)


def test_background_samples_fixes_the_count_per_source() -> None:
    plan = add_background(_manifest(ESC), Path("."), CLASSES, ["rain"], None, 10, describe_clip)
    assert plan.drawn == {"rain": 10}
    assert (plan.manifest["label"] == BACKGROUND_LABEL).sum() == 10


def _wav(path: Path, seconds: float = 1.0, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    soundfile.write(path, (0.1 * rng.normal(size=int(16000 * seconds))).astype(np.float32), 16000)
    return path


def test_a_folder_of_non_target_audio_is_a_background_with_one_source_per_subfolder(tmp_path) -> None:
    raw = tmp_path / "raw"
    for name in ("street/a.wav", "street/b.wav", "kitchen/c.flac", "loose.wav", "notes.txt"):
        if name.endswith("txt"):
            (raw / "noise").mkdir(parents=True, exist_ok=True)
            (raw / "noise" / name).write_text("not audio")
        else:
            _wav(raw / "noise" / name)
    plan = add_background(_manifest({"crying_baby": 4, "dog": 4, "rooster": 4}), raw, CLASSES, [], "noise", 2,
                          describe_clip)  # fmt: skip
    background = plan.manifest[plan.manifest["label"] == BACKGROUND_LABEL]
    assert plan.drawn == {"noise/kitchen": 2, "noise/street": 2, "noise": 2}
    assert set(background["path"]) == {"noise/street/a.wav", "noise/street/b.wav", "noise/kitchen/c.flac",
                                       "noise/loose.wav"}  # fmt: skip
    # described as ingest describes a clip, and spread over the dataset's folds
    assert set(background["sample_rate"]) == {16000} and (background["duration_s"] == 1.0).all()
    assert set(background["fold"]) <= {1, 2, 3, 4} and background["clip_id"].is_unique


@pytest.mark.parametrize(
    ("classes", "labels", "folder", "message"),
    [
        (TARGETS, ["rain"], None, "validate.classes: add 'background'"),
        (CLASSES + ["rain"], ["rain"], None, r"validate.background: \['rain'\] are also in validate.classes"),
        (CLASSES, ["rian"], None, r"validate.background: \['rian'\] have no clips in the data"),
        (CLASSES, [], "../outside", "must be a folder inside the raw folder"),
        (CLASSES, [], "/etc", "must be a folder inside the raw folder"),
        (CLASSES, [], "missing", "is not a folder"),
        (CLASSES, [], "empty", "holds no audio"),
    ],
)
def test_bad_background_settings_are_one_line(tmp_path, classes, labels, folder, message) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=message) as error:
        add_background(_manifest(ESC), tmp_path, classes, labels, folder, None, describe_clip)
    assert "\n" not in str(error.value)


def test_the_validate_section_refuses_a_background_without_its_class() -> None:
    with pytest.raises(ParamsError, match=r"validate.classes: add 'background'"):
        from_dict(ValidateParams, {"classes": TARGETS, "background": ["rain"]}, "validate")
    with pytest.raises(ParamsError, match=r"validate.background_samples"):
        from_dict(
            ValidateParams, {"classes": CLASSES, "background": ["rain"], "background_samples": 0}, "validate"
        )
    assert from_dict(
        ValidateParams, {"classes": CLASSES, "background_dir": "noise"}, "validate"
    ).has_background()
    assert not ValidateParams(classes=TARGETS).has_background()


def test_the_validate_step_adds_the_background_class(tmp_path, capsys) -> None:
    """ESC-10 style: crying_baby, dog and rooster; rain and clock_tick named as background; chainsaw left out."""
    from components.validate import run

    raw = tmp_path / "raw"
    rows = []
    for label, count in {
        "crying_baby": 4,
        "dog": 4,
        "rooster": 4,
        "rain": 3,
        "clock_tick": 2,
        "chainsaw": 2,
    }.items():
        for number in range(count):
            path = _wav(raw / "audio" / f"{label}-{number}.wav", seed=len(rows))
            rows.append(describe_clip(raw, {"clip_id": f"{label}-{number}", "path": path.relative_to(raw).as_posix(),
                                            "label": label, "fold": number % 2 + 1, "split": ""}))  # fmt: skip
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    params = ValidateParams(classes=CLASSES, background=["rain", "clock_tick"], fold_min=1, fold_max=2,
                            min_active_s=0.1, jobs=1)  # fmt: skip
    report = tmp_path / "validation.json"
    run(params, manifest, raw, tmp_path / "validated.csv", report)
    validated = pd.read_csv(tmp_path / "validated.csv")
    assert validated["label"].value_counts().to_dict() == {"crying_baby": 4, "dog": 4, "rooster": 4,
                                                           BACKGROUND_LABEL: 4}  # fmt: skip
    assert json.loads(report.read_text())["background"]["left_out"] == {"chainsaw": 2}
    assert "background class: 4 clips drawn from {'rain': 2, 'clock_tick': 2}" in capsys.readouterr().out


def test_detect_treats_the_background_class_and_fsd50ks_other_as_no_event() -> None:
    from aed.detection.detect import DetectParams
    from aed.detection.postprocess import detect_events

    assert background_classes(["background", "dog", "other", "rooster"]) == ["background", "other"]
    assert background_classes(TARGETS) == []
    scores = np.array([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8]])
    events = detect_events(scores, np.array([0.0, 0.5, 1.0]), 1.0, ["background", "dog"], DetectParams(),
                           background=background_classes(["background", "dog"]))  # fmt: skip
    assert [e.label for e in events] == ["dog"]
