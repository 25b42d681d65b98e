"""The reference log-mel front end (ST model zoo AED recipe), vectorised in numpy.

Time-domain steps (silence removal, 1 s minimum) and the log-mel / patch steps follow the reference recipe
exactly; its values are the defaults here and in params.yaml's `patch` section: 16 kHz mono, 25 ms Hann windows
every 10 ms, 64 mel bands from 125 to 7500 Hz, log(mel + 0.0001), 96-frame patches every 72 frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from aed.params import bounded


@dataclass(frozen=True)
class FeatureConfig:
    """The front-end settings: the `patch` section of params.yaml (aed.patching.PatchParams adds how the store
    is written), read by patch and export-firmware. Ranges are checked when a section is loaded
    (aed.params); the cross-field limits below on every construction."""

    sample_rate: int = bounded(16000, 8000, 48000)
    max_duration_s: float = bounded(10.0, 0.1)
    remove_silence: bool = True
    silence_top_db: float = bounded(60.0, 1.0)
    silence_frame: int = bounded(3200, 1)
    min_length_s: float = bounded(1.0, 0.0)
    n_fft: int = bounded(512, 64)
    win_length: int = bounded(400, 16)
    hop_length: int = bounded(160, 1)
    n_mels: int = bounded(64, 8)
    fmin: float = bounded(125.0, 0.0)
    fmax: float = bounded(7500.0, 1.0)
    log_offset: float = bounded(1e-4, 0.0)
    patch_frames: int = bounded(96, 1)
    patch_step: int = bounded(72, 1)

    def __post_init__(self) -> None:
        """Refuse a front end that cannot work (ValueError "field: problem", before any clip is read): NaN or
        inf anywhere, ln(0) = -inf, a band past Nyquist, frames or patches that cannot be cut."""
        for name, value in vars(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name}: expected a finite number, got {value!r}")
        _require(self.sample_rate > 0, "sample_rate", f"{self.sample_rate} must be > 0")
        _require(self.max_duration_s > 0, "max_duration_s", f"{self.max_duration_s} must be > 0")
        _require(self.silence_top_db > 0, "silence_top_db", f"{self.silence_top_db} must be > 0")
        _require(self.silence_frame >= 1, "silence_frame", f"{self.silence_frame} must be >= 1")
        _require(
            0 <= self.min_length_s <= self.max_duration_s,
            "min_length_s",
            f"{self.min_length_s} must be in [0, max_duration_s {self.max_duration_s}]",
        )
        _require(
            self.log_offset > 0, "log_offset", f"{self.log_offset} must be > 0 (ln(0) of silent bins is -inf)"
        )
        nyquist = self.sample_rate / 2
        _require(self.fmin >= 0, "fmin", f"{self.fmin} must be >= 0")
        _require(self.fmin < self.fmax, "fmin", f"{self.fmin} must be below fmax {self.fmax}")
        _require(self.fmax <= nyquist, "fmax", f"{self.fmax} must be <= sample_rate / 2 = {nyquist:g}")
        _require(self.n_fft >= 2, "n_fft", f"{self.n_fft} must be >= 2")
        _require(
            1 <= self.win_length <= self.n_fft,
            "win_length",
            f"{self.win_length} must be in [1, n_fft {self.n_fft}]",
        )
        _require(
            1 <= self.hop_length <= self.win_length,
            "hop_length",
            f"{self.hop_length} must be in [1, win_length {self.win_length}] (else samples are skipped)",
        )
        _require(self.n_mels >= 1, "n_mels", f"{self.n_mels} must be >= 1")
        _require(
            1 <= self.patch_step <= self.patch_frames,
            "patch_step",
            f"{self.patch_step} must be in [1, patch_frames {self.patch_frames}] (else frames are skipped)",
        )
        most = self.max_frames()
        _require(self.patch_frames <= most, "patch_frames",
                 f"{self.patch_frames} frames is longer than the {most} frames of a max_duration_s "
                 f"{self.max_duration_s:g} s clip: every clip would give 0 patches")  # fmt: skip
        try:
            sparse_mel(self.sample_rate, self.n_fft, self.n_mels, self.fmin, self.fmax)
        except ValueError as error:
            raise ValueError(
                f"n_mels: {self.n_mels} bands between fmin and fmax do not fit n_fft: {error}"
            ) from None

    def max_frames(self) -> int:
        """STFT frames of the longest clip the front end keeps (max_duration_s; center off)."""
        samples = int(round(self.max_duration_s * self.sample_rate))
        return 0 if samples < self.n_fft else 1 + (samples - self.n_fft) // self.hop_length


def _require(condition: bool, field: str, problem: str) -> None:
    if not condition:
        raise ValueError(f"{field}: {problem}")


def hz_to_mel_htk(freq: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


def mel_to_hz_htk(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_matrix(
    sample_rate: int = 16000, n_fft: int = 512, n_mels: int = 64, fmin: float = 125.0, fmax: float = 7500.0
) -> np.ndarray:
    """HTK triangular mel filterbank without area normalisation, shape (n_mels, 1 + n_fft // 2), float32."""
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, 1 + n_fft // 2)
    mel_points = np.linspace(hz_to_mel_htk(fmin), hz_to_mel_htk(fmax), n_mels + 2)
    edges_hz = mel_to_hz_htk(mel_points)
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)
    weights.setflags(write=False)
    return weights


@dataclass(frozen=True)
class SparseMel:
    """The non-zero mel weights band by band (each band's bins are contiguous), as the firmware tables hold them."""

    start: np.ndarray  # first non-zero FFT bin of each band
    stop: np.ndarray  # last non-zero FFT bin of each band (inclusive)
    weights: np.ndarray  # concatenated non-zero weights, band by band (float32, as mel_matrix)


@lru_cache(maxsize=8)
def sparse_mel(
    sample_rate: int = 16000, n_fft: int = 512, n_mels: int = 64, fmin: float = 125.0, fmax: float = 7500.0
) -> SparseMel:
    dense = mel_matrix(sample_rate, n_fft, n_mels, fmin, fmax)
    starts, stops, weights = [], [], []
    for band, row in enumerate(dense):
        nonzero = np.flatnonzero(row)
        if nonzero.size == 0:
            raise ValueError(f"mel band {band} is empty (fmin/fmax/n_mels too tight for n_fft)")
        if nonzero[-1] - nonzero[0] + 1 != nonzero.size:
            raise ValueError(f"mel band {band}: non-zero weights are not contiguous")
        starts.append(int(nonzero[0]))
        stops.append(int(nonzero[-1]))
        weights.append(row[nonzero])
    return SparseMel(start=np.array(starts), stop=np.array(stops), weights=np.concatenate(weights))


@lru_cache(maxsize=8)
def band_limited_mel(
    sample_rate: int = 16000, n_fft: int = 512, n_mels: int = 64, fmin: float = 125.0, fmax: float = 7500.0
) -> tuple[int, np.ndarray]:
    """(first bin, float64 weights of shape (bins, n_mels)) over the FFT bins where any band is non-zero."""
    table = sparse_mel(sample_rate, n_fft, n_mels, fmin, fmax)
    low, high = int(table.start.min()), int(table.stop.max())
    weights = np.ascontiguousarray(
        mel_matrix(sample_rate, n_fft, n_mels, fmin, fmax)[:, low : high + 1].T, np.float64
    )
    weights.setflags(write=False)
    return low, weights


@lru_cache(maxsize=8)
def frame_window(n_fft: int = 512, win_length: int = 400) -> np.ndarray:
    """Periodic Hann of win_length, zero-padded into the middle of an n_fft frame (as librosa does)."""
    hann = hann_window(win_length)
    left = (n_fft - win_length) // 2
    padded = np.zeros(n_fft, dtype=np.float64)
    padded[left : left + win_length] = hann
    padded.setflags(write=False)
    return padded


def hann_window(win_length: int = 400) -> np.ndarray:
    """Periodic Hann window (scipy.signal.get_window('hann', N, fftbins=True))."""
    n = np.arange(win_length)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)


def _frame_rms_db(signal: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """Frame RMS in dB relative to the loudest frame (librosa.feature.rms with center=True, zero padding)."""
    pad = frame_length // 2
    padded = np.pad(signal.astype(np.float64), (pad, pad))
    n_frames = 1 + (len(padded) - frame_length) // hop_length
    if hop_length == frame_length:  # the recipe's case: frames tile the signal, a reshape is enough
        frames = padded[: n_frames * frame_length].reshape(n_frames, frame_length)
    else:
        frames = np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop_length][:n_frames]
    power = np.einsum("ij,ij->i", frames, frames) / frame_length
    amin_power = 1e-10  # librosa amplitude_to_db amin=1e-5, squared
    power_db = 10.0 * np.log10(np.maximum(amin_power, power))
    return power_db - 10.0 * np.log10(max(amin_power, float(power.max(initial=0.0))))


def remove_silence(signal: np.ndarray, top_db: float = 60.0, frame_length: int = 3200) -> np.ndarray:
    """Concatenate the non-silent intervals (librosa.effects.split with hop = frame_length)."""
    if signal.size == 0:
        return signal
    non_silent = _frame_rms_db(signal, frame_length, frame_length) > -top_db
    edges = np.flatnonzero(np.diff(non_silent.astype(np.int8))) + 1
    if non_silent[0]:
        edges = np.concatenate([[0], edges])
    if non_silent[-1]:
        edges = np.concatenate([edges, [len(non_silent)]])
    bounds = np.minimum(edges * frame_length, len(signal)).reshape(-1, 2)
    if len(bounds) == 0:
        return signal[:0]
    return np.concatenate([signal[start:stop] for start, stop in bounds])


def enforce_min_length(signal: np.ndarray, min_samples: int) -> np.ndarray:
    """Tile a short clip to min_samples: repeat floor(min/len)+1 times, keep the first min_samples."""
    if len(signal) >= min_samples or len(signal) == 0:
        return signal
    repeats = min_samples // len(signal) + 1
    return np.tile(signal, repeats)[:min_samples]


def preprocess_waveform(signal: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Time-domain steps of the recipe: silence removal, then the 1 s minimum length."""
    if config.remove_silence:
        signal = remove_silence(signal, config.silence_top_db, config.silence_frame)
    return enforce_min_length(signal, int(round(config.min_length_s * config.sample_rate)))


def log_mel(signal: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Log-mel spectrogram (n_mels, frames), float32: magnitude STFT, center off, ln(mel + offset)."""
    if len(signal) < config.n_fft:
        return np.zeros((config.n_mels, 0), dtype=np.float32)
    return mel_log(stft_magnitude(signal, config), config)


def stft_magnitude(signal: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """|STFT| (frames, bins) over the FFT bins inside the filterbank's support, float64; signal >= n_fft long.
    A step of its own so that bench/patching.py can say what the STFT costs apart from the mel product."""
    # float64 throughout: ln(x + 1e-4) amplifies rounding of near-silent bins by up to 1e4.
    frames = np.lib.stride_tricks.sliding_window_view(signal.astype(np.float64), config.n_fft)
    frames = frames[:: config.hop_length]
    spectrum = np.fft.rfft(frames * frame_window(config.n_fft, config.win_length), axis=1)
    # Only FFT bins inside the filterbank's support (5..239 of 257 by default) enter the product.
    low, weights = band_limited_mel(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax)
    return np.abs(spectrum[:, low : low + weights.shape[0]])


def mel_log(magnitude: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """ln(mel + offset) of stft_magnitude's output, as (n_mels, frames) float32."""
    _, weights = band_limited_mel(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax)
    energies = magnitude @ weights
    return np.log(energies.T + config.log_offset).astype(np.float32)


def patch_count(n_frames: int, patch_frames: int = 96, patch_step: int = 72) -> int:
    return 0 if n_frames < patch_frames else 1 + (n_frames - patch_frames) // patch_step


def to_patches(spectrogram: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Cut (n_mels, frames) into (n, n_mels, patch_frames, 1) patches; the last partial patch is dropped."""
    count = patch_count(spectrogram.shape[1], config.patch_frames, config.patch_step)
    starts = np.arange(count) * config.patch_step
    patches = np.stack([spectrogram[:, s : s + config.patch_frames] for s in starts]) if count else None
    if patches is None:
        return np.zeros((0, config.n_mels, config.patch_frames, 1), dtype=np.float32)
    return patches[..., None].astype(np.float32, copy=False)


def waveform_to_patches(signal: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """The whole per-clip recipe: 16 kHz mono float waveform in, (n, 64, 96, 1) log-mel patches out."""
    return to_patches(log_mel(preprocess_waveform(signal, config), config), config)
