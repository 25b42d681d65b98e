"""Clips -> log-mel patches, in parallel over clips (features are per clip, so clips are independent)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from aed.audio import load_audio
from aed.features import FeatureConfig, waveform_to_patches


def clip_patches(path: Path, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    signal = load_audio(path, config.sample_rate, config.max_duration_s)
    return waveform_to_patches(signal, config)


def _worker(task: tuple[Path, FeatureConfig]) -> np.ndarray:
    return clip_patches(*task)


def patch_clips(
    paths: list[Path], config: FeatureConfig = FeatureConfig(), jobs: int = 0
) -> Iterator[np.ndarray]:
    """Patches of each clip, in input order. jobs=0 uses every core; 1 runs in this process."""
    jobs = jobs or os.cpu_count() or 1
    tasks = [(Path(path), config) for path in paths]
    if jobs == 1 or len(tasks) < 2:
        yield from map(_worker, tasks)
        return
    # fork: workers inherit the imported numpy and the cached mel matrix; nothing heavy is re-imported.
    with get_context("fork").Pool(processes=jobs) as pool:
        yield from pool.imap(_worker, tasks, chunksize=max(1, min(16, len(tasks) // (4 * jobs))))
