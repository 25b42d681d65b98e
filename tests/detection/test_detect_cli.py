"""`aed detect` end to end on recordings whose events are known (tests/detection/conftest.py: a two-class band
model), for each model format, and each bad input of issue 18 point 7: one clear line naming the file, exit 2,
never a traceback, and the other recordings still run and are written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from pipelines.cli import main
from tests.conftest import write_audio
from tests.detection.conftest import quiet, tone_at, write_onnx

LOW = (2.0, 5.0)  # seconds of the 300 Hz tone in `scene`
HIGH = (7.0, 10.0)  # seconds of the 3 kHz tone (below the 4 kHz Nyquist of an 8 kHz file)


def scene(sample_rate: int = 16000, amplitude: float = 0.3) -> np.ndarray:
    """2 s silence, 3 s low tone, 2 s silence, 3 s high tone, 2 s silence."""
    parts = [quiet(2, sample_rate), tone_at(300, 3, sample_rate, amplitude), quiet(2, sample_rate),
             tone_at(3000, 3, sample_rate, amplitude), quiet(2, sample_rate)]  # fmt: skip
    return np.concatenate(parts)


def detect(capsys, *argv) -> tuple[int, str, list[str]]:
    """(exit code, stdout, stderr lines) of `aed detect ...` in this process."""
    try:
        code = main(["detect", *map(str, argv)])
    except SystemExit as done:
        code = done.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


def events_csv(out: Path) -> list[dict]:
    with open(out / "events.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def spans(rows: list[dict], label: str) -> list[tuple[float, float]]:
    return [(float(r["onset"]), float(r["offset"])) for r in rows if r["event_label"] == label]


def assert_scene_events(rows: list[dict]) -> None:
    """One event per tone; a window (0.982 s) that overlaps a tone at all may score it: up to 1 s early."""
    for label, (start, end) in (("low", LOW), ("high", HIGH)):
        found = spans(rows, label)
        assert len(found) == 1, (label, found)
        onset, offset = found[0]
        assert start - 1.0 <= onset <= start + 0.01 and end - 0.01 <= offset <= end + 1.0, (label, found)


@pytest.mark.parametrize("kind", ["tflite", "onnx", "keras"])
def test_events_of_each_model_format_in_the_dcase_layout(tmp_path, capsys, band_models, params_file, kind):
    audio = write_audio(tmp_path / "scene.wav", scene())
    out = tmp_path / "out"
    code, stdout, errors = detect(capsys, "--params", params_file, "--model", band_models[kind], audio,
                                  "--out", out, "--record", tmp_path / "record.json")  # fmt: skip
    assert (code, errors) == (0, [])
    rows = events_csv(out)
    assert list(rows[0]) == ["filename", "onset", "offset", "event_label", "peak"]
    assert_scene_events(rows)
    assert {r["filename"] for r in rows} == {str(audio)}
    assert "2 event(s)" in stdout and " low " in stdout and " high " in stdout
    document = json.loads((out / "events.json").read_text())
    assert document["columns"][:4] == ["filename", "onset", "offset", "event_label"]
    assert len(document["events"]) == 2 and document["failed"] == []
    recording = document["recordings"][0]
    assert recording["duration_s"] == 12.0 and recording["windows"] == 23  # (12 - 0.982) / 0.5 + 1
    assert (out / recording["png"]).read_bytes()[:4] == b"\x89PNG"
    record = json.loads((tmp_path / "record.json").read_text())
    assert (
        record["kind"] == "detect"
        and record["events"] == 2
        and record["events_per_class"] == {"high": 1, "low": 1}
    )


@pytest.mark.parametrize(
    ("name", "sample_rate", "channels"),
    [("scene.flac", 44100, 2), ("scene.ogg", 22050, 1), ("scene.wav", 48000, 2)],
)
def test_any_format_rate_and_channel_count_ingest_reads(tmp_path, capsys, band_models, params_file, name,
                                                         sample_rate, channels):  # fmt: skip
    signal = scene(sample_rate)
    audio = write_audio(
        tmp_path / name, np.stack([signal] * channels, axis=1) if channels > 1 else signal, sample_rate
    )
    code, _, errors = detect(
        capsys, "--params", params_file, "--model", band_models["tflite"], audio, "--out", tmp_path / "o"
    )
    assert (code, errors) == (0, [])
    assert_scene_events(events_csv(tmp_path / "o"))


def test_a_corrupt_file_in_a_folder_is_named_and_the_rest_are_written(
    tmp_path, capsys, band_models, params_file
):
    folder = tmp_path / "recordings"
    good = write_audio(folder / "a_good.wav", scene())
    also_good = write_audio(folder / "sub" / "c_good.flac", scene())
    (folder / "b_corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(256)) * 40)
    truncated = write_audio(folder / "d_truncated.wav", scene())
    truncated.write_bytes(truncated.read_bytes()[:-50000])
    (folder / "notes.txt").write_text("not a recording: not read")
    out = tmp_path / "out"
    code, _, errors = detect(
        capsys, "--params", params_file, "--model", band_models["tflite"], folder, "--out", out
    )
    assert code == 2
    assert len(errors) == 3, errors
    assert errors[0].startswith(f"aed detect: error: {folder / 'b_corrupt.wav'}: ")
    assert errors[1].startswith(f"aed detect: error: {folder / 'd_truncated.wav'}: truncated WAV")
    assert errors[2].startswith("aed detect: error: 2 of 4 inputs could not be used: ")
    rows = events_csv(out)
    assert {r["filename"] for r in rows} == {str(good), str(also_good)}  # nothing of the good ones is lost
    assert_scene_events([r for r in rows if r["filename"] == str(good)])
    failed = json.loads((out / "events.json").read_text())["failed"]
    assert [f["filename"] for f in failed] == [str(folder / "b_corrupt.wav"), str(folder / "d_truncated.wav")]


def test_a_recording_shorter_than_one_patch_is_one_line(tmp_path, capsys, band_models, params_file):
    audio = write_audio(tmp_path / "short.wav", tone_at(300, 0.5))
    code, _, errors = detect(
        capsys, "--params", params_file, "--model", band_models["tflite"], audio, "--out", tmp_path / "o"
    )
    assert code == 2
    assert errors == [
        f"aed detect: error: {audio}: 0.500 s of audio is shorter than one patch (0.982 s): no window to score"
    ]


@pytest.mark.parametrize(
    ("name", "make", "sample_rate", "warning"),
    [
        (
            "silence.wav",
            lambda: np.zeros(5 * 16000, np.float32),
            16000,
            "silent (peak -inf dBFS): no events can be found",
        ),
        (
            "clipped.wav",
            lambda: np.clip(scene(amplitude=3.0), -1, 1),
            16000,
            "of samples clipped at full scale",
        ),
        ("dc.wav", lambda: scene() + 0.4, 16000, "DC offset +0.400 of full scale: it reaches the lowest mel"),
        ("rate8k.wav", lambda: scene(8000), 8000, "recorded at 8000 Hz, upsampled to the model's 16000 Hz"),
        ("phase.wav", lambda: np.stack([scene(), -scene()], axis=1), 16000, "2 channels mostly cancel"),
    ],
)
def test_doubtful_recordings_are_scored_with_one_warning_naming_them(tmp_path, capsys, band_models, params_file,
                                                                      name, make, sample_rate, warning):  # fmt: skip
    audio = write_audio(tmp_path / name, make(), sample_rate, subtype="FLOAT")
    out = tmp_path / "o"
    code, _, errors = detect(
        capsys, "--params", params_file, "--model", band_models["tflite"], audio, "--out", out
    )
    assert code == 0
    assert (
        len(errors) == 1 and errors[0].startswith(f"aed detect: warning: {audio}: ") and warning in errors[0]
    )
    assert json.loads((out / "events.json").read_text())["recordings"][0]["warnings"] == [
        errors[0].split(": ", 3)[3]
    ]
    if name in ("clipped.wav", "rate8k.wav"):  # the tones are still found
        assert_scene_events(events_csv(out))


def test_a_model_whose_class_count_differs_from_the_class_map(tmp_path, capsys, band_models, params_file):
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"class_names": ["dog", "rain", "rooster"]}))
    audio = write_audio(tmp_path / "scene.wav", scene())
    out = tmp_path / "out"
    code, _, errors = detect(capsys, "--params", params_file, "--model", band_models["onnx"], audio,
                             "--classes", classes, "--out", out)  # fmt: skip
    assert code == 2 and not out.exists()
    assert errors == [f"aed detect: error: {band_models['onnx']}: the model has 2 outputs but the class map "
                      "(validate.classes or --classes) names 3 classes"]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t, m: {"model": t / "missing.tflite"}, "missing.tflite: model file missing or empty"),
        (lambda t, m: {"model": _write(t / "m.pt", b"x")}, "unknown model format '.pt'"),
        (lambda t, m: {"model": _write(t / "m.tflite", b"not a model")}, "not a valid TFLite model"),
        (lambda t, m: {"model": _write(t / "m.onnx", b"not a model")}, "not a valid ONNX model"),
        (
            lambda t, m: {"model": write_onnx(t / "logits.onnx", softmax=False)},
            "outputs are not probabilities",
        ),
        (
            lambda t, m: {"model": write_onnx(t / "bands.onnx", bands=40)},
            "takes patches of shape (40, 96, 1), the front end (params.yaml patch) makes (64, 96, 1)",
        ),
        (
            lambda t, m: {"extra": ["--hop-s", "0.333"]},
            "hop_s: 0.333 must be a positive multiple of the front end's 0.01 s",
        ),
        (lambda t, m: {"extra": ["--hop-s", "2"]}, "hop_s: 2.0 is longer than a patch"),
        (
            lambda t, m: {"extra": ["--background", "rain"]},
            "--background: ['rain'] not among the model's classes",
        ),
        (lambda t, m: {"extra": ["--classes", _write(t / "c.json", b"{}")]}, "c.json: not a class map"),
        (
            lambda t, m: {"extra": ["--operating-point", _write(t / "op.json", b"{")]},
            "op.json: cannot read the operating point",
        ),
        (
            lambda t, m: {
                "extra": [
                    "--operating-point",
                    _write(t / "op.json", b'{"on_threshold": 0.2, "off_threshold": 0.3}'),
                ]
            },
            "op.json.off_threshold: 0.3 must be <= on_threshold 0.2",
        ),  # fmt: skip
        (lambda t, m: {"audio": t / "nowhere.wav"}, "nowhere.wav: no such file or folder"),
        (
            lambda t, m: {"audio": _folder(t / "empty")},
            "empty: no audio files (.wav, .flac, .ogg, .mp3) in this folder",
        ),
        (lambda t, m: {"out": _write(t / "taken", b"a file")}, "is a file, not a folder"),
    ],
)
def test_bad_settings_and_inputs_are_one_line(tmp_path, capsys, band_models, params_file, change, message):
    given = {"model": band_models["tflite"], "audio": write_audio(tmp_path / "scene.wav", scene()),
             "out": tmp_path / "out", "extra": [], **change(tmp_path, band_models)}  # fmt: skip
    code, _, errors = detect(capsys, "--params", params_file, "--model", given["model"], given["audio"],
                             "--out", given["out"], *given["extra"])  # fmt: skip
    assert code == 2
    assert len(errors) == 1 and errors[0].startswith("aed detect: error: ") and message in errors[0], errors


def test_background_classes_and_an_operating_point_change_the_events(
    tmp_path, capsys, band_models, params_file
):
    audio = write_audio(tmp_path / "scene.wav", scene())
    code, _, _ = detect(capsys, "--params", params_file, "--model", band_models["tflite"], audio,
                        "--out", tmp_path / "a", "--background", "low")  # fmt: skip
    assert code == 0 and [r["event_label"] for r in events_csv(tmp_path / "a")] == ["high"]
    point = _write(tmp_path / "op.json", json.dumps({"on_threshold": 0.999, "off_threshold": 0.99}).encode())
    code, _, _ = detect(capsys, "--params", params_file, "--model", band_models["tflite"], audio,
                        "--out", tmp_path / "b", "--operating-point", point)  # fmt: skip
    assert code == 0 and events_csv(tmp_path / "b") == []  # the int8 model's highest score is 0.996


def test_the_output_never_replaces_an_input(tmp_path, capsys, band_models, params_file):
    folder = tmp_path / "recordings"
    write_audio(folder / "scene.wav", scene())
    code, _, errors = detect(
        capsys, "--params", params_file, "--model", band_models["tflite"], folder, "--out", folder
    )
    assert code == 2 and len(errors) == 1 and "a step never replaces its own input" in errors[0]
    assert (folder / "scene.wav").is_file()


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path
