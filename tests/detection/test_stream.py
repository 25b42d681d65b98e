"""The sliding front end: chunk edges lose and duplicate no frame, patches equal the whole-signal front end's,
memory stays bounded, and unusable files raise one clear AudioError."""

from __future__ import annotations

import dataclasses
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from aed.audio import AudioError, load_audio
from aed.detection.stream import StreamStats, hop_frames, stream_patches, window_seconds
from aed.features import FeatureConfig, log_mel, patch_count, to_patches
from tests.conftest import write_audio

CONFIG = FeatureConfig(remove_silence=False)


def noise(seconds: float, sample_rate: int = 16000, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (
        (int(round(seconds * sample_rate)), channels) if channels > 1 else int(round(seconds * sample_rate))
    )
    return (0.1 * rng.standard_normal(shape)).astype(np.float32)


def whole_signal_patches(signal: np.ndarray, hop_s: float) -> np.ndarray:
    """The reference: log-mel of the whole signal at once, cut every hop (aed.features)."""
    step = hop_frames(CONFIG, hop_s)
    return to_patches(log_mel(signal, CONFIG), dataclasses.replace(CONFIG, patch_step=step))


def streamed(path: Path, hop_s: float, chunk_s: float) -> tuple[np.ndarray, np.ndarray]:
    blocks = list(stream_patches(path, CONFIG, hop_s, chunk_s))
    return np.concatenate([b.starts_s for b in blocks]), np.concatenate([b.patches for b in blocks])


# 0.003 s chunks are shorter than one STFT frame (512 samples); 0.0101 s cut frames and hops at odd places;
# 7.1 s holds the whole file in one chunk
@pytest.mark.parametrize("chunk_s", [0.003, 0.0101, 0.37, 1.0, 7.1])
@pytest.mark.parametrize("hop_s", [0.01, 0.5, 0.72, 0.96])
def test_chunk_edges_lose_and_duplicate_no_frame(tmp_path: Path, chunk_s: float, hop_s: float) -> None:
    signal = noise(7.0)[: 7 * 16000 - 37]  # a length that is no multiple of anything
    path = write_audio(tmp_path / "a.wav", signal, subtype="FLOAT")
    starts, patches = streamed(path, hop_s, chunk_s)
    reference = whole_signal_patches(signal, hop_s)
    step = hop_frames(CONFIG, hop_s)
    assert len(patches) == len(reference) == patch_count(log_mel(signal, CONFIG).shape[1], 96, step)
    np.testing.assert_allclose(patches, reference, atol=1e-5, rtol=0)
    np.testing.assert_allclose(starts, np.arange(len(patches)) * step * 0.01, atol=1e-9)


@pytest.mark.parametrize(("sample_rate", "channels"), [(44100, 1), (8000, 1), (22050, 2), (48000, 2)])
def test_other_rates_and_stereo_match_the_whole_file_decode(tmp_path: Path, sample_rate: int, channels: int):
    path = write_audio(tmp_path / "a.flac", noise(6.3, sample_rate, channels), sample_rate)
    whole = load_audio(path, 16000, None)  # mono mix and resampling of the whole file at once
    starts, patches = streamed(path, 0.5, 0.8)
    reference = whole_signal_patches(whole, 0.5)
    assert patches.shape == reference.shape
    np.testing.assert_allclose(patches, reference, atol=1e-5, rtol=0)


def test_a_recording_of_exactly_one_patch_gives_one_window(tmp_path: Path) -> None:
    samples = round(window_seconds(CONFIG) * 16000)  # 15712: 96 frames of 512, 160 apart
    path = write_audio(tmp_path / "one.wav", noise(1.0)[:samples], subtype="FLOAT")
    starts, patches = streamed(path, 0.5, 60.0)
    assert starts.tolist() == [0.0] and patches.shape == (1, 64, 96, 1)


def test_a_recording_shorter_than_a_patch_is_refused_naming_it(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "short.wav", noise(0.9))
    with pytest.raises(
        AudioError, match=r"short\.wav: 0\.900 s of audio is shorter than one patch \(0\.982 s\)"
    ):
        list(stream_patches(path, CONFIG, 0.5))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "zero-length file"),
        (b"not audio at all" * 100, "cannot read audio header"),
    ],
)
def test_unreadable_files_raise_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=message):
        list(stream_patches(path, CONFIG, 0.5))


def test_a_truncated_wav_is_refused(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "cut.wav", noise(3.0))
    path.write_bytes(path.read_bytes()[:-20000])
    with pytest.raises(AudioError, match="truncated WAV"):
        list(stream_patches(path, CONFIG, 0.5))


def test_non_finite_samples_are_refused(tmp_path: Path) -> None:
    signal = noise(3.0)
    signal[30000] = np.nan
    path = write_audio(tmp_path / "nan.wav", signal, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: non-finite sample"):
        list(stream_patches(path, CONFIG, 0.5))


@pytest.mark.parametrize("hop_s", [0.005, 0.333, 1.5, 0.0, -1.0, float("nan")])
def test_a_hop_that_is_no_whole_number_of_frames_or_longer_than_a_patch_is_refused(hop_s: float) -> None:
    with pytest.raises(ValueError, match="hop_s: "):
        hop_frames(CONFIG, hop_s)


def test_stats_see_the_file_as_recorded(tmp_path: Path) -> None:
    left = noise(2.0)
    stereo = np.stack([left, -left], axis=1)  # out of phase: the mono mix is silent
    stereo[:100, 0] = 1.0  # 100 clipped samples
    path = write_audio(tmp_path / "s.wav", stereo, 22050, subtype="FLOAT")
    stats = StreamStats()
    list(stream_patches(path, CONFIG, 0.5, 0.3, stats))
    assert (stats.sample_rate, stats.channels, stats.samples) == (22050, 2, 32000)
    assert stats.clipped == 100 and stats.peak == 1.0
    assert stats.energy_mono < 0.1 * stats.energy_channels  # what detect warns about


def test_memory_stays_bounded_on_a_long_recording(tmp_path: Path) -> None:
    """10 minutes of 16-bit audio: decoding it whole would take 38 MB as float32, 77 MB as float64."""
    rng = np.random.default_rng(0)
    path = tmp_path / "long.wav"
    import soundfile

    with soundfile.SoundFile(str(path), "w", 16000, 1, subtype="PCM_16") as handle:
        for _ in range(10):
            handle.write((0.1 * rng.standard_normal(60 * 16000)).astype(np.float32))
    tracemalloc.start()
    try:
        count = sum(len(block.starts_s) for block in stream_patches(path, CONFIG, 0.5, chunk_s=10.0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 1199  # (600 s - 0.982 s) / 0.5 s + 1
    assert peak < 25e6, f"peak {peak / 1e6:.1f} MB"
