from pathlib import Path

import numpy as np
import pytest

from aed.audio import AudioError, load_audio, probe
from tests.conftest import tone, write_audio


def test_flac_at_16k_mono_is_read_as_is(tmp_path: Path):
    signal = tone(1.5)
    path = write_audio(tmp_path / "a.flac", signal)
    loaded = load_audio(path)
    assert loaded.dtype == np.float32 and loaded.shape == signal.shape
    assert np.abs(loaded - signal).max() < 1e-4  # 16-bit quantisation only


@pytest.mark.parametrize("rate", [8000, 44100])
def test_other_sample_rates_are_resampled_not_rejected(tmp_path: Path, rate: int):
    path = write_audio(tmp_path / f"r{rate}.wav", tone(2.0, sample_rate=rate), sample_rate=rate)
    assert load_audio(path).shape == (32000,)


def test_stereo_is_mixed_down_by_averaging(tmp_path: Path):
    left, right = tone(1.0, frequency=300), tone(1.0, frequency=700)
    path = write_audio(tmp_path / "s.wav", np.stack([left, right], axis=1), subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), (left + right) / 2, atol=1e-6)


def test_ogg_vorbis_decodes(tmp_path: Path):
    path = write_audio(tmp_path / "a.ogg", tone(1.0), subtype="VORBIS")
    assert abs(len(load_audio(path)) - 16000) <= 1


def test_only_the_first_ten_seconds_are_read(tmp_path: Path):
    path = write_audio(tmp_path / "long.flac", tone(12.0))
    assert load_audio(path).shape == (160000,)


def test_zero_length_file_names_the_file(tmp_path: Path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: zero-length file"):
        load_audio(path)


def test_truncated_flac_is_a_clear_error(tmp_path: Path):
    good = write_audio(tmp_path / "good.flac", tone(2.0)).read_bytes()
    path = tmp_path / "cut.flac"
    path.write_bytes(good[:30])
    with pytest.raises(AudioError, match=r"cut\.flac"):
        load_audio(path)


def test_garbage_bytes_are_a_clear_error(tmp_path: Path):
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(AudioError, match=r"noise\.wav: cannot read audio header"):
        probe(path)


def test_nan_and_inf_samples_are_reported(tmp_path: Path):
    signal = tone(1.0)
    signal[100], signal[200] = np.nan, np.inf
    path = write_audio(tmp_path / "nan.wav", signal, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: 2 non-finite sample"):
        load_audio(path)


def test_missing_file(tmp_path: Path):
    with pytest.raises(AudioError, match="file not found"):
        load_audio(tmp_path / "nope.flac")


def test_truncated_wav_is_detected_from_its_riff_header(tmp_path: Path):
    whole = write_audio(tmp_path / "whole.wav", tone(3.0)).read_bytes()
    path = tmp_path / "half.wav"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(AudioError, match=r"half\.wav: truncated WAV: header declares 96000 bytes"):
        load_audio(path)
