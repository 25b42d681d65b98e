"""The recipe written the straightforward way with librosa, as ST's model zoo does it.

Kept as the reference for parity tests and for bench/patching.py; the pipeline uses aed.features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def librosa_log_mel(signal: np.ndarray) -> np.ndarray:
    import librosa

    mel = librosa.feature.melspectrogram(
        y=signal,
        sr=16000,
        n_fft=512,
        win_length=400,
        hop_length=160,
        window="hann",
        center=False,
        power=1.0,
        n_mels=64,
        fmin=125,
        fmax=7500,
        htk=True,
        norm=None,
    )
    return np.log(mel + 1e-4)


def librosa_clip_patches(path: Path) -> np.ndarray:
    import librosa

    signal, _ = librosa.load(str(path), sr=16000, mono=True, duration=10)
    intervals = librosa.effects.split(signal, top_db=60, frame_length=3200, hop_length=3200)
    signal = np.concatenate([signal[start:stop] for start, stop in intervals])
    if len(signal) < 16000:
        signal = np.tile(signal, 16000 // len(signal) + 1)[:16000]
    log_mel = librosa_log_mel(signal)
    count = 0 if log_mel.shape[1] < 96 else 1 + (log_mel.shape[1] - 96) // 72
    patches = [log_mel[:, 72 * i : 72 * i + 96] for i in range(count)]
    return np.stack(patches)[..., None].astype(np.float32)
