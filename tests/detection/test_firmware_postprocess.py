"""The firmware's post-processing constants make a board find the events host `aed detect` finds.

A board is emulated in numpy from the exported files only: the C tables (user_mel_tables.c) for the front end and
ai_model_config.h's constants for the windows and the post-processing, written as a firmware would run them (one
window at a time, float32, a ring buffer for the smoothing). On a soundscape, with the same model, it gives host
detect's events."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

from aed import firmware
from aed.detection.detect import DetectParams, Scorer, detect_file
from aed.detection.soundscapes import SoundscapeParams, build_set, clip_sources
from aed.features import FeatureConfig
from components.export_firmware import _postprocess_constants

SR = 16000
CLASSES = ["background", "high", "low"]  # sorted, as the model's outputs are; `background` is no event
CONFIG = FeatureConfig()


def _c_array(text: str, name: str) -> np.ndarray:
    body = re.search(rf"{name}\[[^\]]*\]\s*=\s*\{{(.*?)\}};", text, re.S)
    assert body, f"{name} not found"
    return np.array([float(v.rstrip("f")) for v in re.findall(r"-?[\d.]+(?:e[-+]\d+)?f?", body.group(1))])


def _define(header: str, name: str) -> str:
    match = re.search(rf"#define CTRL_X_CUBE_AI_{name}\s+(.*)", header)
    assert match, f"{name} not in the header"
    return match.group(1).strip()


def _number(header: str, name: str) -> float:
    return float(_define(header, name).strip("()").rstrip("F"))


def _band_model(patches: np.ndarray) -> np.ndarray:
    """A fixed 'model': low mel bands loud -> low, high bands loud -> high, else background (softmax)."""
    bands = patches[..., 0].mean(axis=2)  # (n, n_mels)
    level = np.median(bands, axis=1)
    logits = np.stack([np.full(len(bands), 1.5), bands[:, 40:60].max(1) - level,
                       bands[:, 4:16].max(1) - level], axis=1)  # fmt: skip
    odds = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (odds / odds.sum(axis=1, keepdims=True)).astype(np.float32)


SCORER = Scorer(Path("band-model"), "numpy", len(CLASSES), _band_model)


def _board_front_end(audio: np.ndarray, tables: str, header: str) -> tuple[np.ndarray, np.ndarray]:
    """(window starts in s, patches) from the C tables and the header's frame settings."""
    window, lut = _c_array(tables, "user_win"), _c_array(tables, "user_melFiltersLut")
    start = _c_array(tables, "user_melFiltersStartIndices").astype(int)
    stop = _c_array(tables, "user_melFiltersStopIndices").astype(int)
    n_fft, hop = int(_number(header, "SPECTROGRAM_NFFT")), int(_number(header, "SPECTROGRAM_HOP_LENGTH"))
    columns, rate = int(_number(header, "SPECTROGRAM_COL")), _number(header, "SENSOR_ODR")
    offset = float(re.search(r"ln\(mel \+ ([\d.e-]+)\)", header).group(1))
    dense, position = np.zeros((start.size, n_fft // 2 + 1)), 0
    for band in range(start.size):
        width = stop[band] - start[band] + 1
        dense[band, start[band] : stop[band] + 1] = lut[position : position + width]
        position += width
    signal = audio.astype(np.float64) / 32768.0
    pad = (n_fft - window.size) // 2
    frames = np.lib.stride_tricks.sliding_window_view(signal, n_fft)[::hop]
    shaped = np.zeros_like(frames)
    shaped[:, pad : pad + window.size] = frames[:, pad : pad + window.size] * window
    logmel = np.log(np.abs(np.fft.rfft(shaped, axis=1)) @ dense.T + offset).T  # (n_mels, frames)
    step = int(round(_number(header, "PP_HOP_S") * rate / hop))
    firsts = range(0, logmel.shape[1] - columns + 1, step)
    patches = np.stack([logmel[:, f : f + columns] for f in firsts])[..., None].astype(np.float32)
    return np.array([f * hop / rate for f in firsts]), patches


def _board_events(starts: np.ndarray, scores: np.ndarray, header: str) -> list[tuple]:
    """The header's post-processing, one window at a time as firmware runs it (float32 throughout)."""
    n = int(_number(header, "PP_SMOOTHING_WINDOWS"))
    on, off = np.float32(_number(header, "PP_ON_THRESHOLD")), np.float32(_number(header, "PP_OFF_THRESHOLD"))
    gap, shortest = _number(header, "PP_MERGE_GAP_S"), _number(header, "PP_MIN_DURATION_S")
    length = _number(header, "PP_WINDOW_S")
    background = [flag == "1" for flag in re.findall(r"[01]", _define(header, "PP_BACKGROUND"))]
    ring = np.zeros((n, scores.shape[1]), np.float32)
    active: list[int | None] = [None] * scores.shape[1]  # first window of the running event
    last_window = [0] * scores.shape[1]
    spans: list[list] = [[] for _ in range(scores.shape[1])]

    def close(c: int, first: int, end: int) -> None:
        onset, offset = float(starts[first]), float(starts[end]) + length
        if spans[c] and onset - spans[c][-1][1] <= gap + 1e-9:
            spans[c][-1][1] = offset
        else:
            spans[c].append([onset, offset])

    for i, row in enumerate(scores.astype(np.float32)):
        ring[i % n] = row
        smoothed = ring.sum(axis=0, dtype=np.float32) / np.float32(min(i + 1, n))
        for c in range(scores.shape[1]):
            if background[c]:
                continue
            if active[c] is None and smoothed[c] >= on:
                active[c] = i
            elif active[c] is not None and smoothed[c] < off:
                close(c, active[c], i - 1)
                active[c] = None
            last_window[c] = i
    for c, first in enumerate(active):
        if first is not None:
            close(c, first, len(scores) - 1)
    found = [(round(a, 6), round(b, 6), CLASSES[c]) for c in range(len(CLASSES)) for a, b in spans[c]
             if b - a >= shortest - 1e-9]  # fmt: skip
    return sorted(found)


@pytest.fixture(scope="module")
def soundscape(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    rows = []
    for i, (label, hz, seconds) in enumerate([("low", 400, 2.5), ("low", 600, 1.2), ("high", 4000, 3.0),
                                              ("high", 5000, 0.9)]):  # fmt: skip
        tone = 0.3 * np.sin(2 * np.pi * hz * np.arange(int(seconds * SR)) / SR)
        soundfile.write(folder / f"c{i}.wav", np.concatenate([np.zeros(SR), tone, np.zeros(SR)]), SR)
        rows.append({"clip_id": f"c{i}", "path": f"c{i}.wav", "label": label})
    params = SoundscapeParams(duration_s=60.0, events_per_minute=10.0, noise_dbfs=-45.0, seed=7)
    build_set(clip_sources(pd.DataFrame(rows), folder), folder / "set", "fw", 1, params, ["high", "low"], [])
    return folder / "set" / "fw-0.wav"


def _export(tmp_path: Path, operating_point: Path | None, detect: DetectParams) -> tuple[str, str]:
    constants, _ = _postprocess_constants(CONFIG, CLASSES, detect, operating_point)
    header = firmware.config_header(CONFIG, CLASSES, 0.05, -10, 0.0, constants)
    return header, firmware.tables_source(firmware.mel_tables(CONFIG))


def test_board_constants_give_host_detects_events(soundscape: Path, tmp_path: Path) -> None:
    point = {"smoothing_windows": 2, "on_threshold": 0.6, "off_threshold": 0.42, "min_duration_s": 1.5,
             "merge_gap_s": 0.5}  # fmt: skip
    (tmp_path / "postprocess.json").write_text(json.dumps(point))
    detect = DetectParams(hop_s=0.25)  # its own thresholds differ: the operating point file must win
    header, tables = _export(tmp_path, tmp_path / "postprocess.json", detect)
    audio, _ = soundfile.read(soundscape, dtype="int16")
    starts, patches = _board_front_end(audio, tables, header)
    board = _board_events(starts, _band_model(patches), header)

    host = detect_file(
        SCORER, soundscape, CLASSES, DetectParams(hop_s=0.25, **point), background=["background"]
    )
    expected = sorted((e.onset, e.offset, e.label) for e in host.events)
    assert len(expected) >= 4 and {label for *_, label in expected} == {"high", "low"}
    assert len(board) == len(expected)
    for (b_on, b_off, b_label), (h_on, h_off, h_label) in zip(board, expected, strict=True):
        assert b_label == h_label and abs(b_on - h_on) < 1e-3 and abs(b_off - h_off) < 1e-3
    # the constants matter: the detect: section's own thresholds give other events
    other = detect_file(SCORER, soundscape, CLASSES, DetectParams(hop_s=0.25), background=["background"])
    assert sorted((e.onset, e.offset, e.label) for e in other.events) != expected


def test_header_constants(tmp_path: Path) -> None:
    detect = DetectParams(
        hop_s=0.5, smoothing_windows=3, on_threshold=0.6, off_threshold=0.4, merge_gap_s=0.5
    )
    header, _ = _export(tmp_path, None, detect)
    assert _define(header, "PP_SMOOTHING_WINDOWS") == "(3)"
    assert _number(header, "PP_ON_THRESHOLD") == 0.6 and _number(header, "PP_OFF_THRESHOLD") == 0.4
    assert _number(header, "PP_MERGE_GAP_S") == 0.5 and _number(header, "PP_HOP_S") == 0.5
    assert _number(header, "PP_WINDOW_S") == pytest.approx((95 * 160 + 512) / 16000)
    assert _define(header, "PP_BACKGROUND") == "{1, 0, 0}"
    plain = firmware.config_header(CONFIG, CLASSES, 0.05, -10, 0.0)
    assert "PP_" not in plain  # without constants the header is as before
    with pytest.raises(firmware.FirmwareExportError, match="3 background flags for 2 classes"):
        constants, _ = _postprocess_constants(CONFIG, CLASSES, detect, None)
        firmware.config_header(CONFIG, CLASSES[:2], 0.05, -10, 0.0, constants)


def test_bad_operating_point_or_hop(tmp_path: Path) -> None:
    from aed.params import ParamsError

    with pytest.raises(ParamsError, match="not found"):
        _export(tmp_path, tmp_path / "missing.json", DetectParams())
    with pytest.raises(ValueError, match="hop_s: 0.123"):
        _export(tmp_path, None, DetectParams(hop_s=0.123))
