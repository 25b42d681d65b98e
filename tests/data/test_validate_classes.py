"""A user's own classes: class-balance limits that follow the number of classes, failures said in words, labels
that do not match validate.classes stopped with the closest class, and the quarantine summary on the console."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from aed.datasets.ingest import IngestParams
from aed.params import ParamsError, from_dict, read_params
from aed.validation.expectations import describe_failures
from aed.validation.validate import ValidateParams, label_mismatch
from components.cli import main
from components.ingest import run as ingest
from tests.conftest import REPO, tone, write_audio

THREE = ["crying_baby", "dog", "rooster"]


def dataset(
    root: Path, counts: dict[str, int], silent: tuple[str, ...] = (), short: tuple[str, ...] = ()
) -> Path:
    """`counts[label]` one-second clips per label in a `filename,label,fold` CSV, plus one all-silent clip per
    label in `silent` and one with 30 ms of sound (then zeros) per label in `short`; then an ingested manifest."""
    source, rows = root / "src", []
    blip = tone(1.0)
    blip[480:] = 0.0
    for kind, labels, signal in (("silent", silent, tone(1.0) * 0), ("short", short, blip)):
        for label in labels:
            write_audio(source / f"clips/{kind}_{label}.wav", signal)
            rows.append(f"clips/{kind}_{label}.wav,{label},1")
    for index, (label, count) in enumerate(counts.items()):
        for clip in range(count):
            name = f"clips/{label}_{clip}.wav"
            write_audio(source / name, tone(1.0, frequency=300 + 100 * index + 7 * clip))
            rows.append(f"{name},{label},{1 + clip % 5}")
    (source / "labels.csv").write_text("filename,label,fold\n" + "\n".join(rows) + "\n")
    ingest(IngestParams(source=str(source), layout="csv"), root / "raw", root / "manifest.csv")
    return root


def params_file(root: Path, classes: list[str], **settings) -> Path:
    """The repository's validate section (its defaults) with the user's classes, one job (2 shared cores)."""
    section = {**read_params(REPO / "params.yaml")["validate"], "classes": classes, "jobs": 1, **settings}
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump({"validate": section}))
    return path


def run_validate(root: Path, params: Path, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """`aed validate` on the dataset: exit code, stdout, stderr (without what building the dataset printed)."""
    capsys.readouterr()
    code = main(validate_cli(root, params))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def validate_cli(root: Path, params: Path) -> list[str]:
    return ["validate", "--params", str(params), "--manifest", str(root / "manifest.csv"), "--raw-dir",
            str(root / "raw"), "--validated", str(root / "validated.csv"), "--report", str(root / "validation.json"),
            "--data-docs", str(root / "docs")]  # fmt: skip


@pytest.fixture(autouse=True)
def no_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AED_DATA_MIRROR", raising=False)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 7, 10, 20, 50, 200])
def test_derived_share_limits_admit_balanced_data_and_refuse_a_class_five_times_another(n: int) -> None:
    params = ValidateParams(classes=[f"class{i}" for i in range(n)])
    low, high = params.share_limits()
    assert low <= 1 / n <= high
    # one class with 5x the clips of each other one has too large a share; one with 1/5 too small a share
    assert 5 / (n + 4) > high and 1 / (1 + 5 * (n - 1)) < low
    # ... while 12/12/8-like losses to quarantine pass: one class down by a third
    assert low <= (2 / 3) / (n - 1 / 3)


def test_derived_share_limits_for_esc10_are_the_values_the_project_used() -> None:
    low, high = ValidateParams(classes=[f"c{i}" for i in range(10)]).share_limits()
    assert (round(low, 9), round(high, 9)) == (0.05, 0.2)


def test_share_limits_set_by_the_user_win() -> None:
    assert ValidateParams(classes=THREE, min_share=0.1, max_share=0.5).share_limits() == (0.1, 0.5)
    assert ValidateParams(classes=THREE, max_share=0.5).share_limits() == (pytest.approx(1 / 6), 0.5)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_share": 0.2}, "validate.max_share: 0.2 is below 1/3 = 0.3333"),
        ({"min_share": 0.4}, "validate.min_share: 0.4 is above 1/3 = 0.3333"),
        ({"min_share": 0.3, "max_share": 0.25}, "validate.min_share: 0.3 is above validate.max_share 0.25"),
        ({"min_clips_per_class": 0}, "validate.min_clips_per_class: 0 is out of range"),
    ],
)
def test_limits_no_dataset_can_meet_are_refused_naming_the_key(settings: dict, message: str) -> None:
    with pytest.raises(ParamsError, match=message.replace(".", r"\.")):
        from_dict(ValidateParams, {"classes": THREE, **settings}, "validate")


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["dog", "rooster", "crying_babby", "crying_babby"],
         "labels in the data not in the list: crying_babby (2 clips; did you mean crying_baby?); "
         "classes in the list with no clips in the data: crying_baby"),
        (["dog", "rooster", "crying_baby", "Dog"], "labels in the data not in the list: Dog (1 clip; did you mean dog?)"),
        (["dog", "rooster", "crying_baby", "dog "], "not in the list: 'dog ' (1 clip; did you mean dog?)"),
        (["dog", "rooster", "crying_baby", "helicopter"], "not in the list: helicopter (1 clip)"),
        (["dog", "crying_baby"], "classes in the list with no clips in the data: rooster"),
        (["dog", "crying_baby", "rooster", "dog"], None),
    ],
)  # fmt: skip
def test_label_mismatch_names_unknown_labels_with_the_closest_class(labels: list[str], expected: str | None):
    found = label_mismatch(labels, THREE)
    assert found == expected if expected is None or expected.startswith("labels") else expected in found


@pytest.mark.parametrize("classes", [THREE, ["dog", "rooster"]], ids=["3 classes", "2 classes"])
def test_balanced_data_passes_with_the_default_limits(tmp_path: Path, classes: list[str], capsys) -> None:
    root = dataset(tmp_path, dict.fromkeys(classes, 6))
    code, out, _ = run_validate(root, params_file(root, classes), capsys)
    report = root / "validation.json"
    assert (
        code == 0
        and f"validate: 0 clips quarantined, {6 * len(classes)} passed; full report: {report}" in out
    )


def test_skewed_data_fails_saying_which_class_has_which_share_and_what_is_allowed(tmp_path, capsys) -> None:
    root = dataset(tmp_path, {"crying_baby": 5, "dog": 24, "rooster": 5})
    code, out, err = run_validate(root, params_file(root, THREE), capsys)
    (line,) = err.strip().splitlines()
    assert code == 2
    assert (
        "class share: crying_baby is 0.147 of the clips, dog is 0.706 of the clips, rooster is 0.147 of the clips, "
        "allowed 0.167 to 0.667"
    ) in line, line
    assert "derived from 3 classes" in line and "observed" not in line and "expect_" not in line
    assert "validate: 0 clips quarantined, 34 passed; full report:" in out  # printed also when it fails


def test_a_class_left_without_clips_by_quarantine_is_named(tmp_path: Path, capsys) -> None:
    root = dataset(tmp_path, {"dog": 6, "rooster": 6}, silent=("crying_baby",))
    code, out, err = run_validate(root, params_file(root, THREE, min_share=0.0, max_share=1.0), capsys)
    assert code == 2 and "clips per class: crying_baby has 0 clips, allowed at least 5" in err
    assert "validate: 1 of 13 clips quarantined (silent 1), 12 passed;" in out


def test_the_quarantine_summary_counts_clips_per_reason_and_names_the_report(tmp_path: Path, capsys) -> None:
    root = dataset(tmp_path, dict.fromkeys(THREE, 6), silent=("dog", "rooster"), short=("dog",))
    # silence removal keeps whole 0.2 s frames: the 30 ms blip leaves 0.2 s of sound
    code, out, _ = run_validate(root, params_file(root, THREE, min_active_s=0.3), capsys)
    expected = (
        "validate: 3 of 21 clips quarantined (silent 2, too little sound after silence removal 1), 18 passed; "
        f"full report: {root / 'validation.json'}"
    )
    assert code == 0 and expected in out


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        (THREE, "validate.classes: labels in the data not in the list: crying_babby (6 clips; did you mean "
                "crying_baby?); classes in the list with no clips in the data: crying_baby (data: "),
        (["crying_babby", "dog", "rooster", "siren"], "validate.classes: classes in the list with no clips in the "
                                                      "data: siren (data: "),
    ],
    ids=["typo", "class without clips"],
)  # fmt: skip
def test_labels_and_classes_that_disagree_stop_before_any_clip_is_checked(
    tmp_path: Path, capsys, classes: list[str], message: str
) -> None:
    root = dataset(tmp_path, {"crying_babby": 6, "dog": 6, "rooster": 6})
    code, _, err = run_validate(root, params_file(root, classes), capsys)
    (line,) = err.strip().splitlines()
    assert code == 2 and message in line and str(root / "manifest.csv") in line, line
    assert not (root / "validated.csv").exists() and not (root / "validation.json").exists()


def test_a_failed_check_on_a_whole_table_or_column_says_what_is_missing_and_unexpected() -> None:
    def failed(kind: str, kwargs: dict, observed: list) -> dict:
        config = {"type": kind, "kwargs": kwargs}
        return {"success": False, "expectation_config": config, "result": {"observed_value": observed}}

    result = {
        "results": [
            failed("expect_table_columns_to_match_set", {"column_set": ["a", "b", "c"]}, ["a", "c", "d"]),
            failed(
                "expect_column_distinct_values_to_equal_set", {"column": "label", "value_set": ["x"]}, ["z"]
            ),
        ]
    }
    assert describe_failures(result, pd.DataFrame(), "label") == [
        "columns: missing b; unexpected d (expected: a, b, c)",
        "label: missing x; unexpected z (allowed: x)",
    ]
