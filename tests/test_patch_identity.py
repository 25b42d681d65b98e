"""The patcher's speed work (issue 20) changes no value: patches are bit-identical to the pre-change recipe,
written out here the way aed.audio / aed.features computed it before (three opens per file, log_mel in one
function, glibc's default malloc), on seeded synthetic clips of several lengths, rates and channel counts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from aed.audio import load_audio, read_audio
from aed.features import (
    FeatureConfig,
    band_limited_mel,
    frame_window,
    log_mel,
    preprocess_waveform,
    to_patches,
)
from aed.patching import keep_freed_memory, patch_clips


def old_load_audio(path: Path, sample_rate: int = 16000, max_duration_s: float = 10.0) -> np.ndarray:
    """aed.audio.load_audio before: soundfile.info, then soundfile.read (the file opened twice)."""
    info = soundfile.info(str(path))
    frames = int(round(max_duration_s * info.samplerate))
    samples, _ = soundfile.read(str(path), frames=frames, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if info.samplerate != sample_rate:
        mono = soxr.resample(mono, info.samplerate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def old_log_mel(signal: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """aed.features.log_mel before it was split into stft_magnitude and mel_log."""
    if len(signal) < config.n_fft:
        return np.zeros((config.n_mels, 0), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(signal.astype(np.float64), config.n_fft)
    frames = frames[:: config.hop_length]
    spectrum = np.fft.rfft(frames * frame_window(config.n_fft, config.win_length), axis=1)
    low, weights = band_limited_mel(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax)
    energies = np.abs(spectrum[:, low : low + weights.shape[0]]) @ weights
    return np.log(energies.T + config.log_offset).astype(np.float32)


def old_clip_patches(path: Path, config: FeatureConfig) -> np.ndarray:
    signal = old_load_audio(path, config.sample_rate, config.max_duration_s)
    return to_patches(old_log_mel(preprocess_waveform(signal, config), config), config)


# (seconds, sample rate, channels, file format): the ESC-10 case (5 s FLAC at 16 kHz), a 10 s cut of a longer
# clip, resampling from 44.1 kHz, stereo, WAV, and a clip shorter than a patch (tiled to 1 s)
CLIPS = [
    (5.0, 16000, 1, "FLAC"),
    (12.0, 16000, 1, "FLAC"),
    (3.0, 44100, 2, "FLAC"),
    (2.5, 22050, 1, "WAV"),
    (0.4, 16000, 1, "WAV"),
]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("identity")
    rng = np.random.default_rng(20)
    paths = []
    for number, (seconds, rate, channels, kind) in enumerate(CLIPS):
        t = np.arange(int(seconds * rate)) / rate
        wave = 0.3 * np.sin(2 * np.pi * (300 + 200 * number) * t)[:, None] + 0.05 * rng.standard_normal(
            (t.size, channels)
        )
        wave[len(t) // 3 : len(t) // 2] *= 1e-5  # a quiet stretch, so that silence removal cuts something
        path = folder / f"clip{number}.{kind.lower()}"
        soundfile.write(str(path), wave.astype(np.float32), rate, format=kind, subtype="PCM_16")
        paths.append(path)
    return paths


def test_decoding_is_bit_identical_to_the_two_open_reader(clips):
    for path in clips:
        np.testing.assert_array_equal(load_audio(path), old_load_audio(path))
        samples, info = read_audio(path, 10.0)
        header = soundfile.info(str(path))
        assert (info.sample_rate, info.channels, info.frames) == (
            header.samplerate,
            header.channels,
            header.frames,
        )
        assert samples.shape == (min(header.frames, 10 * header.samplerate), header.channels)


def test_log_mel_is_bit_identical_to_the_single_function(clips):
    config = FeatureConfig()
    for path in clips:
        signal = preprocess_waveform(old_load_audio(path), config)
        np.testing.assert_array_equal(log_mel(signal, config), old_log_mel(signal, config))


def test_patch_clips_in_process_and_in_workers_give_the_old_patches_bit_for_bit(clips):
    config = FeatureConfig()
    expected = [old_clip_patches(path, config) for path in clips]
    for jobs in (1, 2):
        got = list(patch_clips(clips, config, jobs=jobs))
        assert len(got) == len(expected)
        for ours, old in zip(got, expected, strict=True):
            assert ours.dtype == np.float32 and ours.tobytes() == old.tobytes()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_kept_for_reuse_and_values_do_not_depend_on_it(clips):
    """keep_freed_memory takes on glibc; a fresh process that never called it computes the same bytes."""
    assert keep_freed_memory() is True
    config = FeatureConfig()
    code = (
        "import sys; from pathlib import Path; from tests.test_patch_identity import old_clip_patches;"
        "from aed.features import FeatureConfig;"
        "sys.stdout.buffer.write(b''.join(old_clip_patches(Path(p), FeatureConfig()).tobytes() for p in sys.argv[1:]))"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", code, *map(str, clips)],
        capture_output=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout
    ours = b"".join(patches.tobytes() for patches in patch_clips(clips, config, jobs=1))
    assert ours == fresh
