from pathlib import Path

import librosa
import numpy as np
import pytest

from aed.features import (
    FeatureConfig,
    enforce_min_length,
    log_mel,
    mel_matrix,
    patch_count,
    remove_silence,
    sparse_mel,
    to_patches,
    waveform_to_patches,
)
from aed.features_librosa import librosa_clip_patches, librosa_log_mel
from aed.patching import clip_patches
from tests.conftest import tone


def test_mel_matrix_matches_librosa_htk_without_normalisation():
    expected = librosa.filters.mel(sr=16000, n_fft=512, n_mels=64, fmin=125, fmax=7500, htk=True, norm=None)
    np.testing.assert_allclose(mel_matrix(), expected, rtol=0, atol=1e-7)


def test_sparse_mel_holds_the_461_reference_weights_over_bins_5_to_239():
    table = sparse_mel()
    assert len(table.weights) == 461
    assert table.start.min() == 5 and table.stop.max() == 239
    assert int((table.stop - table.start + 1).sum()) == len(table.weights)
    dense = mel_matrix()
    position = 0
    for band in range(64):
        width = table.stop[band] - table.start[band] + 1
        segment = table.weights[position : position + width]
        np.testing.assert_array_equal(segment, dense[band, table.start[band] : table.stop[band] + 1])
        position += width


def test_silence_removal_matches_librosa_split_on_gapped_signal():
    rng = np.random.default_rng(1)
    parts = [
        0.3 * rng.standard_normal(8000),
        np.zeros(9600),
        0.2 * rng.standard_normal(12345),
        np.zeros(5000),
    ]
    signal = np.concatenate(parts).astype(np.float32)
    intervals = librosa.effects.split(signal, top_db=60, frame_length=3200, hop_length=3200)
    expected = np.concatenate([signal[a:b] for a, b in intervals])
    np.testing.assert_array_equal(remove_silence(signal), expected)
    assert len(remove_silence(signal)) < len(signal)


def test_min_length_tiles_after_silence_removal():
    short = np.arange(7000, dtype=np.float32)
    tiled = enforce_min_length(short, 16000)
    assert len(tiled) == 16000
    np.testing.assert_array_equal(tiled[7000:14000], short)  # floor(16000/7000)+1 = 3 repeats, cut
    assert enforce_min_length(np.ones(20000, np.float32), 16000).shape == (20000,)


@pytest.mark.parametrize(("seconds", "frames", "patches"), [(1.0, 97, 1), (5.0, 497, 6), (10.0, 997, 13)])
def test_frame_and_patch_counts_follow_the_reference(seconds, frames, patches):
    signal = tone(seconds)
    spectrogram = log_mel(signal)
    assert spectrogram.shape == (64, frames)
    assert patch_count(frames) == patches
    assert to_patches(spectrogram).shape == (patches, 64, 96, 1)


def test_patches_step_by_72_frames_and_drop_the_partial_tail():
    spectrogram = np.arange(64 * 300, dtype=np.float32).reshape(64, 300)
    patches = to_patches(spectrogram)
    assert patches.shape[0] == 1 + (300 - 96) // 72
    np.testing.assert_array_equal(patches[1, :, :, 0], spectrogram[:, 72:168])


def test_log_mel_matches_librosa_on_a_synthetic_clip():
    signal = tone(3.0, frequency=1000.0)
    assert np.abs(log_mel(signal) - librosa_log_mel(signal)).max() <= 1e-3


def test_every_clip_gives_at_least_one_patch_even_when_short():
    assert waveform_to_patches(tone(0.2)).shape == (1, 64, 96, 1)


def test_parity_with_straightforward_librosa_on_real_esc10_clips(esc10_dir: Path):
    clips = sorted((esc10_dir / "audio").glob("*.flac"))[::20]  # 20 clips across all folds and classes
    assert len(clips) == 20
    worst = 0.0
    for clip in clips:
        ours, reference = clip_patches(clip), librosa_clip_patches(clip)
        assert ours.shape == reference.shape, clip
        worst = max(worst, float(np.abs(ours - reference).max()))
    assert worst <= 1e-3


def test_feature_config_defaults_are_the_reference_recipe():
    config = FeatureConfig()
    assert (config.n_fft, config.win_length, config.hop_length, config.n_mels) == (512, 400, 160, 64)
    assert (config.fmin, config.fmax, config.log_offset) == (125.0, 7500.0, 1e-4)
    assert (config.patch_frames, config.patch_step, config.silence_frame) == (96, 72, 3200)
