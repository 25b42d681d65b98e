import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aed.datasets.errors import DatasetError
from aed.datasets.ingest import IngestParams
from aed.validation.validate import ValidateParams
from components.ingest import run as ingest
from components.validate import run
from tests.conftest import tone, write_audio

CLASSES = ["bark", "horn"]


def bad_dataset(root: Path) -> Path:
    """Six good clips (three kinds of odd-but-valid audio among them) and every kind of bad input."""
    clips = root / "clips"
    write_audio(clips / "good1.flac", tone(2.0))
    write_audio(clips / "good2.flac", tone(2.0, frequency=800))
    write_audio(clips / "rate8k.wav", tone(2.0, sample_rate=8000), sample_rate=8000)
    write_audio(clips / "rate44k.wav", tone(2.0, sample_rate=44100), sample_rate=44100)
    write_audio(clips / "stereo.wav", np.stack([tone(2.0), tone(2.0, frequency=600)], axis=1))
    write_audio(clips / "good3.ogg", tone(2.0, frequency=500), subtype="VORBIS")
    whole = write_audio(clips / "whole.flac", tone(2.0)).read_bytes()
    (clips / "truncated.flac").write_bytes(whole[: len(whole) // 2])
    (clips / "empty.wav").write_bytes(b"")
    (clips / "garbage.ogg").write_bytes(np.random.default_rng(2).bytes(3000))
    nan = tone(2.0)
    nan[10] = np.nan
    write_audio(clips / "nan.wav", nan, subtype="FLOAT")
    write_audio(clips / "silent.wav", np.zeros(32000, np.float32))
    write_audio(clips / "missing.wav", tone(2.0))  # removed from the raw copy after ingest (see `manifest`)
    rows = [
        "clips/good1.flac,bark,1",
        "clips/good2.flac,horn,1",
        "clips/rate8k.wav,bark,2",
        "clips/rate44k.wav,horn,2",
        "clips/stereo.wav,bark,1",
        "clips/good3.ogg,horn,2",
        "clips/truncated.flac,bark,1",
        "clips/empty.wav,horn,1",
        "clips/garbage.ogg,bark,1",
        "clips/nan.wav,horn,2",
        "clips/silent.wav,bark,2",
        "clips/missing.wav,horn,1",
        "clips/good1.flac,horn,2",  # the last: same clip id as row 2
    ]
    (root / "labels.csv").write_text("filename,label,fold\n" + "\n".join(rows) + "\n")
    return root


@pytest.fixture
def manifest(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("AED_DATA_MIRROR", raising=False)
    source = bad_dataset(tmp_path / "src")
    ingest(IngestParams(source=str(source), layout="csv"), tmp_path / "raw", tmp_path / "manifest.csv")
    # a file lost after ingest (ingest itself refuses a row naming a missing file)
    (tmp_path / "raw" / "clips" / "missing.wav").unlink()
    return tmp_path / "manifest.csv"


def validate(tmp_path: Path, manifest: Path, **overrides) -> dict:
    settings = {"classes": CLASSES, "fold_min": 1, "fold_max": 5, "max_share": 1.0, "min_clips_per_class": 1}
    params = ValidateParams(**{**settings, **overrides})
    return run(
        params,
        manifest,
        tmp_path / "raw",
        tmp_path / "validated.csv",
        tmp_path / "validation.json",
        tmp_path / "docs",
    )


def test_bad_files_are_quarantined_with_reasons_and_nothing_valid_is_lost(tmp_path, manifest):
    metrics = validate(tmp_path, manifest)
    report = json.loads((tmp_path / "validation.json").read_text())
    passed = pd.read_csv(tmp_path / "validated.csv")
    assert metrics["n_clips_in"] == 13 == metrics["n_passed"] + metrics["n_quarantined"]
    assert sorted(passed["clip_id"]) == ["good1", "good2", "good3", "rate44k", "rate8k", "stereo"]
    reasons = {
        item["clip_id"] + "@" + str(item["manifest_row"]): " ".join(item["reasons"])
        for item in report["quarantined"]
    }
    expected = {
        "truncated@8": "truncated.flac: cannot",
        "empty@9": "empty.wav: zero-length file",
        "garbage@10": "garbage.ogg: cannot read audio header",
        "nan@11": "nan.wav: 1 non-finite sample",
        "silent@12": "silent.wav: silent",
        "missing@13": "missing.wav: file not found",
        "good1@14": "duplicate clip_id (first at manifest row 2)",
    }
    assert set(reasons) == set(expected)
    for key, fragment in expected.items():
        assert fragment in reasons[key], (key, reasons[key])
    assert report["quarantine_counts"] == {
        "unreadable audio": 4, "duplicate clip_id": 1, "file missing": 1, "silent": 1
    }  # fmt: skip
    assert (tmp_path / "docs" / "index.html").exists()


def test_policy_fail_stops_after_writing_the_report(tmp_path, manifest):
    with pytest.raises(DatasetError, match=r"7 bad file\(s\) and validate.on_bad_file is 'fail'"):
        validate(tmp_path, manifest, on_bad_file="fail")
    assert json.loads((tmp_path / "validation.json").read_text())["n_quarantined"] == 7


def test_class_balance_out_of_bounds_is_a_dataset_error_in_words(tmp_path, manifest):
    with pytest.raises(DatasetError) as error:
        validate(tmp_path, manifest, min_share=0.45, max_share=0.55, min_clips_per_class=4)
    assert "clips per class: bark has 3 clips, horn has 3 clips, allowed at least 4" in str(error.value)
    assert "observed" not in str(error.value) and "expect_" not in str(error.value)


def test_fold_out_of_range_is_quarantined(tmp_path, manifest):
    frame = pd.read_csv(manifest, keep_default_na=False)
    frame.loc[0, "fold"] = 9
    frame.to_csv(manifest, index=False)
    validate(tmp_path, manifest)
    report = json.loads((tmp_path / "validation.json").read_text())
    good1 = [q for q in report["quarantined"] if q["manifest_row"] == 2][0]
    assert "fold is 9, allowed 1 to 5" in " ".join(good1["reasons"])
    assert report["quarantine_counts"]["fold out of range"] == 1


def test_empty_class_list_is_refused_naming_the_labels_found(tmp_path, manifest):
    with pytest.raises(DatasetError, match=r"validate.classes: empty class list.*: \[bark, horn\]"):
        run(ValidateParams(), manifest, tmp_path / "raw", tmp_path / "v.csv", tmp_path / "r.json")
