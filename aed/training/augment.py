"""Log-mel patch augmentation, seeded numpy (applied before the frozen part of the network, then cached).

The reference: GaussianNoise(0.1) on the log-mel values, then one volume factor per batch from U(0.8, 1.2)
multiplying them. SpecAugment-style masks (off in the reference) replace bands with the patch mean.
"""

from __future__ import annotations

import numpy as np

from aed.training.params import TrainParams


def noise_and_volume(
    patches: np.ndarray, rng: np.random.Generator, sigma: float, low: float, high: float, batch_size: int
) -> np.ndarray:
    """x + N(0, sigma), then x * U(low, high) with one factor per consecutive batch of batch_size patches."""
    out = patches + rng.normal(0.0, sigma, size=patches.shape).astype(np.float32) if sigma else patches.copy()
    n_batches = -(-len(out) // batch_size)
    factors = rng.uniform(low, high, size=n_batches).astype(np.float32)
    out *= np.repeat(factors, batch_size)[: len(out)].reshape(-1, *([1] * (out.ndim - 1)))
    return out


def spec_masks(
    patches: np.ndarray,
    rng: np.random.Generator,
    time_masks: int,
    time_width: int,
    freq_masks: int,
    freq_width: int,
) -> np.ndarray:
    """SpecAugment masks on (n, mels, frames, 1) patches, in place; masked cells get the patch mean."""
    n, n_mels, n_frames = patches.shape[:3]
    means = patches.reshape(n, -1).mean(axis=1)
    for i in range(n):
        for _ in range(time_masks if time_width else 0):
            width = int(rng.integers(0, time_width + 1))
            start = int(rng.integers(0, max(1, n_frames - width + 1)))
            patches[i, :, start : start + width] = means[i]
        for _ in range(freq_masks if freq_width else 0):
            width = int(rng.integers(0, freq_width + 1))
            start = int(rng.integers(0, max(1, n_mels - width + 1)))
            patches[i, start : start + width, :] = means[i]
    return patches


def augment_patches(patches: np.ndarray, params: TrainParams, rng: np.random.Generator) -> np.ndarray:
    """One augmented copy of the (already shuffled) training patches."""
    out = noise_and_volume(
        patches, rng, params.gaussian_noise, params.volume_min, params.volume_max, params.batch_size
    )
    if params.spec_time_masks or params.spec_freq_masks:
        spec_masks(
            out,
            rng,
            params.spec_time_masks,
            params.spec_time_width,
            params.spec_freq_masks,
            params.spec_freq_width,
        )
    return out


def mixup(
    x: np.ndarray, y: np.ndarray, alpha: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Mix every sample with a random partner: lambda ~ Beta(alpha, alpha) per sample, soft labels."""
    partner = rng.permutation(len(x))
    lam = rng.beta(alpha, alpha, size=len(x)).astype(np.float32)
    lam = np.maximum(lam, 1.0 - lam)  # keep the sample itself dominant, so its own label leads
    shape = (-1,) + (1,) * (x.ndim - 1)
    mixed_x = lam.reshape(shape) * x + (1.0 - lam.reshape(shape)) * x[partner]
    mixed_y = lam[:, None] * y + (1.0 - lam[:, None]) * y[partner]
    return mixed_x.astype(np.float32), mixed_y.astype(np.float32)


class ClipFrames:
    """The log-mel frames of each clip, rebuilt from its overlapping patches (patch i starts at frame step * i),
    so that training patches can be cut at shifted offsets: a time-shift augmentation on real frames."""

    def __init__(
        self, patches: np.ndarray, clip_ids: np.ndarray, numbers: np.ndarray, step: int = 72
    ) -> None:
        self.step = step
        self.width = patches.shape[2]
        self.frames: dict[str, np.ndarray] = {}
        order = np.lexsort((numbers, clip_ids))
        for clip in np.unique(clip_ids):
            rows = order[clip_ids[order] == clip]
            count = len(rows)
            total = step * (count - 1) + self.width
            frames = np.empty((patches.shape[1], total, patches.shape[3]), np.float32)
            for k, row in enumerate(rows):
                frames[:, step * k : step * k + self.width] = patches[row]
            self.frames[str(clip)] = frames
        self.clip_ids, self.numbers = clip_ids, numbers

    def shifted(self, max_shift: int, rng: np.random.Generator) -> np.ndarray:
        """Each patch re-cut at its own offset + U{-max_shift..max_shift}, clamped inside its clip."""
        out = np.empty(
            (len(self.clip_ids), *next(iter(self.frames.values())).shape[:1], self.width, 1), np.float32
        )
        shifts = rng.integers(-max_shift, max_shift + 1, size=len(self.clip_ids))
        for i, (clip, number) in enumerate(zip(self.clip_ids, self.numbers, strict=True)):
            frames = self.frames[str(clip)]
            start = int(np.clip(self.step * int(number) + shifts[i], 0, frames.shape[1] - self.width))
            out[i] = frames[:, start : start + self.width]
        return out
