"""validate refuses rows that would read outside the raw dir and audio beyond full scale, with their reasons."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aed.datasets.ingest import IngestParams
from aed.validation.audio_checks import AudioCheckConfig, check_clip, path_problem
from aed.validation.validate import ValidateParams
from components.ingest import run as ingest
from components.validate import run
from tests.conftest import tone, write_audio


@pytest.fixture
def manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three good clips and one float WAV peaking at +50 dBFS; then two rows pointing outside the raw dir at a
    perfectly good clip (so only the path can be the reason)."""
    monkeypatch.delenv("AED_DATA_MIRROR", raising=False)
    source = tmp_path / "src"
    write_audio(source / "clips/a.wav", tone(2.0))
    write_audio(source / "clips/b.wav", tone(2.0, frequency=700))
    write_audio(source / "clips/c.wav", tone(2.0, frequency=900))
    write_audio(source / "clips/loud.wav", tone(2.0, amplitude=10 ** (50 / 20)), subtype="FLOAT")
    rows = ["clips/a.wav,bark,1", "clips/b.wav,horn,1", "clips/c.wav,bark,2", "clips/loud.wav,horn,2"]
    (source / "labels.csv").write_text("filename,label,fold\n" + "\n".join(rows) + "\n")
    ingest(IngestParams(source=str(source), layout="csv"), tmp_path / "raw", tmp_path / "manifest.csv")
    outside = write_audio(tmp_path / "outside.wav", tone(2.0, frequency=300))
    frame = pd.read_csv(tmp_path / "manifest.csv", keep_default_na=False)
    escaping = [("up", "../outside.wav"), ("deep", "clips/../../outside.wav"), ("abs", str(outside))]
    extra = [{**frame.iloc[0].to_dict(), "clip_id": clip_id, "path": path} for clip_id, path in escaping]
    pd.concat([frame, pd.DataFrame(extra)]).to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path / "manifest.csv"


def test_rows_leaving_the_raw_dir_and_loud_float_audio_are_quarantined(
    tmp_path: Path, manifest: Path
) -> None:
    params = ValidateParams(classes=["bark", "horn"], fold_min=1, fold_max=5, max_share=1.0)
    metrics = run(params, manifest, tmp_path / "raw", tmp_path / "v.csv", tmp_path / "r.json", None)
    report = json.loads((tmp_path / "r.json").read_text())
    reasons = {item["clip_id"]: " ".join(item["reasons"]) for item in report["quarantined"]}
    assert set(reasons) == {"loud", "up", "deep", "abs"}, reasons
    assert "peak +50.0 dBFS above full scale" in reasons["loud"]
    assert "'..'" in reasons["up"] and "'..'" in reasons["deep"]
    assert "absolute" in reasons["abs"]
    assert sorted(pd.read_csv(tmp_path / "v.csv")["clip_id"]) == ["a", "b", "c"]
    assert metrics["n_clips_in"] == 7 == metrics["n_passed"] + metrics["n_quarantined"]


@pytest.mark.parametrize(
    "path",
    ["../x.wav", "a/../../x.wav", "/etc/passwd", "..\\x.wav", "C:\\x.wav", "C:x.wav", "", "  ", "a/\x00.wav"],
)
def test_path_problem_refuses_paths_that_leave_the_raw_dir(path: str) -> None:
    assert path_problem(path)


@pytest.mark.parametrize("path", ["a.wav", "clips/a.wav", "a..b.wav", "./a.wav", "dir.v2/x.flac"])
def test_path_problem_accepts_relative_paths_inside(path: str) -> None:
    assert path_problem(path) is None


def test_full_scale_float_and_resampled_full_scale_int_pass(tmp_path: Path) -> None:
    """Exactly 0 dBFS is fine, and so is an int16 square wave whose resampling overshoots 1.0 a little."""
    square = np.sign(np.sin(2 * np.pi * 440 * np.arange(88200) / 44100)).astype(np.float32)
    full = write_audio(tmp_path / "full.wav", tone(2.0) / np.abs(tone(2.0)).max(), subtype="FLOAT")
    clipped = write_audio(tmp_path / "square.wav", square, sample_rate=44100, subtype="PCM_16")
    assert check_clip(full, AudioCheckConfig()) == []
    assert check_clip(clipped, AudioCheckConfig()) == []


def test_wav_just_above_full_scale_is_quarantined(tmp_path: Path) -> None:
    loud = write_audio(tmp_path / "loud.wav", tone(2.0, amplitude=1.5), subtype="FLOAT")
    (reason,) = check_clip(loud, AudioCheckConfig())
    assert reason.kind == "above full scale" and "loud.wav" in reason.detail


@pytest.mark.parametrize("step", ["validate", "patch"])
@pytest.mark.parametrize(
    "content",
    [b'clip_id,path\n"a,b\n', b"", b"\xff\xfe\x00garbage\n\x80\x81", b"only_one_column\nx\n"],
    ids=["open-quote", "empty", "bytes", "columns"],
)
def test_an_unreadable_manifest_is_one_line_naming_the_file(step, content, tmp_path, capsys) -> None:
    from components.cli import main

    manifest = tmp_path / "manifest.csv"
    manifest.write_bytes(content)
    raw = tmp_path / "raw"
    raw.mkdir()
    out = tmp_path / "out"
    args = {
        "validate": ["validate", "--manifest", str(manifest), "--raw-dir", str(raw), "--validated",
                     str(out / "validated.csv"), "--report", str(out / "report.json"), "--data-docs", str(out / "docs")],
        "patch": ["patch", "--manifest", str(manifest), "--raw-dir", str(raw), "--out", str(out / "patches"),
                  "--metrics", str(out / "patch.json")],
    }[step]  # fmt: skip
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and str(manifest) in err, err
