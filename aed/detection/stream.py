"""The reference front end slid over a whole recording in bounded memory.

The file is decoded chunk by chunk (float32, `chunk_s` seconds at a time), mixed to mono and resampled with a
streaming soxr resampler; STFT frames and log-mel patches are computed as soon as their samples are there, and
only the samples and frames a later patch still needs are kept. No silence removal and no length limit: patches
start every `hop_s` seconds from the first sample, and a patch at frame f equals the whole-signal front end's
(aed.features.log_mel then the same cut) to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aed.audio import AudioError, _check_riff_length, probe
from aed.features import FeatureConfig, band_limited_mel, frame_window


@dataclass(frozen=True)
class PatchBlock:
    starts_s: np.ndarray  # (n,) each patch's first sample, in seconds from the start of the recording
    patches: np.ndarray  # (n, n_mels, patch_frames, 1) float32, as aed.features.to_patches


@dataclass
class StreamStats:
    """What the decoder saw, for the warnings detect prints (clipping, DC offset, silence, stereo cancellation)."""

    sample_rate: int = 0
    channels: int = 0
    samples: int = 0  # per channel, at the file's rate
    peak: float = 0.0  # of the file's own samples, any channel
    clipped: int = 0  # samples at or beyond full scale (|x| >= 0.999), any channel
    sum_mono: float = 0.0
    energy_mono: float = 0.0  # sum of squares of the mixed-down signal
    energy_channels: float = 0.0  # mean over channels of each channel's sum of squares

    @property
    def duration_s(self) -> float:
        return self.samples / self.sample_rate if self.sample_rate else 0.0


def window_seconds(config: FeatureConfig) -> float:
    """The audio one patch spans: patch_frames STFT frames of n_fft samples, hop_length apart."""
    return ((config.patch_frames - 1) * config.hop_length + config.n_fft) / config.sample_rate


def hop_frames(config: FeatureConfig, hop_s: float) -> int:
    """hop_s as a whole number of STFT frames (ValueError "hop_s: ..." when it is not one)."""
    frame_s = config.hop_length / config.sample_rate
    frames = round(hop_s / frame_s) if math.isfinite(hop_s) else 0
    if frames < 1 or abs(frames * frame_s - hop_s) > 1e-6:
        raise ValueError(
            f"hop_s: {hop_s} must be a positive multiple of the front end's {frame_s:g} s frame hop"
        )
    if frames > config.patch_frames:
        raise ValueError(
            f"hop_s: {hop_s} is longer than a patch ({config.patch_frames * frame_s:g} s): audio would be skipped"
        )
    return frames


def stream_patches(
    path: Path,
    config: FeatureConfig,
    hop_s: float,
    chunk_s: float = 60.0,
    stats: StreamStats | None = None,
) -> Iterator[PatchBlock]:
    """Patches of the whole recording every hop_s seconds, in blocks of about chunk_s seconds.

    AudioError (one line naming the file) for an unreadable file or one shorter than a patch; `stats`, when
    given, is filled as the file is read."""
    path = Path(path)
    step = hop_frames(config, hop_s)
    if not chunk_s > 0:
        raise ValueError(f"chunk_s: {chunk_s} must be > 0")
    stats = stats if stats is not None else StreamStats()
    slicer = _Slicer(config, step)
    produced = 0
    for mono in _mono_chunks(path, config.sample_rate, chunk_s, stats):
        block = slicer.push(mono)
        if len(block.starts_s):
            produced += len(block.starts_s)
            yield block
    if produced == 0:
        raise AudioError(
            f"{path}: {stats.duration_s:.3f} s of audio is shorter than one patch "
            f"({window_seconds(config):.3f} s): no window to score"
        )


class _Slicer:
    """Samples in, patches out: keeps the samples of frames not yet computed and the frames of patches not yet
    cut, with global frame numbers so patch starts do not depend on where chunks end."""

    def __init__(self, config: FeatureConfig, step: int) -> None:
        self.config, self.step = config, step
        self.samples = np.zeros(0, np.float32)
        self.first_sample = 0  # global index of self.samples[0]
        self.frames = np.zeros((config.n_mels, 0), np.float32)
        self.first_frame = 0  # global frame number of self.frames[:, 0]
        self.next_patch = 0  # global frame number where the next patch starts

    def push(self, mono: np.ndarray) -> PatchBlock:
        self.samples = np.concatenate([self.samples, mono])
        self._new_frames()
        return self._cut_patches()

    def _new_frames(self) -> None:
        c = self.config
        next_frame = self.first_frame + self.frames.shape[1]
        offset = (
            next_frame * c.hop_length - self.first_sample
        )  # first sample of the next frame, in the buffer
        available = len(self.samples) - offset
        count = 0 if available < c.n_fft else 1 + (available - c.n_fft) // c.hop_length
        if count:
            span = self.samples[offset : offset + (count - 1) * c.hop_length + c.n_fft]
            self.frames = np.concatenate([self.frames, _log_mel_frames(span, c)], axis=1)
        keep_from = offset + count * c.hop_length  # the first sample of the first frame not computed yet
        self.samples = self.samples[keep_from:]
        self.first_sample += keep_from

    def _cut_patches(self) -> PatchBlock:
        c = self.config
        local = self.next_patch - self.first_frame
        count = patch_starts = 0
        last_frame = self.frames.shape[1]
        if last_frame - local >= c.patch_frames:
            count = 1 + (last_frame - local - c.patch_frames) // self.step
        patch_starts = local + np.arange(count) * self.step
        patches = np.empty((count, c.n_mels, c.patch_frames, 1), np.float32)
        for i, start in enumerate(patch_starts):
            patches[i, ..., 0] = self.frames[:, start : start + c.patch_frames]
        starts_s = (self.first_frame + patch_starts) * c.hop_length / c.sample_rate
        self.next_patch += count * self.step
        drop = self.next_patch - self.first_frame  # frames before the next patch are no longer needed
        self.frames = self.frames[:, drop:]
        self.first_frame += drop
        return PatchBlock(starts_s=starts_s.astype(np.float64), patches=patches)


def _log_mel_frames(span: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """aed.features.log_mel on a span of samples, frame for frame (float64 inside, float32 out)."""
    frames = np.lib.stride_tricks.sliding_window_view(span.astype(np.float64), config.n_fft)
    frames = frames[:: config.hop_length]
    spectrum = np.fft.rfft(frames * frame_window(config.n_fft, config.win_length), axis=1)
    low, weights = band_limited_mel(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax)
    energies = np.abs(spectrum[:, low : low + weights.shape[0]]) @ weights
    return np.log(energies.T + config.log_offset).astype(np.float32)


def _mono_chunks(path: Path, sample_rate: int, chunk_s: float, stats: StreamStats) -> Iterator[np.ndarray]:
    """The file as mono float32 chunks at sample_rate; stats accumulate the file's own samples."""
    import soundfile
    import soxr

    if not path.is_file():
        raise AudioError(f"{path}: file not found")
    info = probe(path)
    _check_riff_length(path)
    stats.sample_rate, stats.channels = info.sample_rate, info.channels
    resampler = None
    if info.sample_rate != sample_rate:
        resampler = soxr.ResampleStream(info.sample_rate, sample_rate, 1, dtype="float32", quality="HQ")
    block = max(1, int(chunk_s * info.sample_rate))
    try:
        with soundfile.SoundFile(str(path)) as handle:
            while True:
                samples = handle.read(block, dtype="float32", always_2d=True)
                last = len(samples) < block
                mono = _account(samples, stats, path)
                if resampler is not None:
                    mono = resampler.resample_chunk(mono, last=last)
                yield np.ascontiguousarray(mono, np.float32)
                if last:
                    return
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise AudioError(f"{path}: cannot decode audio after {stats.duration_s:.1f} s ({error})") from None


def _account(samples: np.ndarray, stats: StreamStats, path: Path) -> np.ndarray:
    if not np.isfinite(samples).all():
        raise AudioError(f"{path}: non-finite sample(s) (NaN or inf) near {stats.duration_s:.1f} s")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if len(samples):
        stats.samples += len(samples)
        stats.peak = max(stats.peak, float(np.abs(samples).max()))
        stats.clipped += int(np.count_nonzero(np.abs(samples) >= 0.999))
        stats.sum_mono += float(mono.sum(dtype=np.float64))
        stats.energy_mono += float(np.dot(mono.astype(np.float64), mono))
        stats.energy_channels += (
            float(np.einsum("ij,ij->", samples, samples, dtype=np.float64)) / samples.shape[1]
        )
    return mono
