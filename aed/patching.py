"""Clips -> log-mel patches, in parallel over clips (features are per clip, so clips are independent)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

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
        with threadpool_limits(limits=1, user_api="blas"):
            yield from map(_worker, tasks)
        return
    # fork: workers inherit the imported numpy and the cached mel matrix; nothing heavy is re-imported.
    # One BLAS thread per worker: parallelism is over clips, and nested threads only contend.
    with get_context("fork").Pool(processes=jobs, initializer=_single_threaded_blas) as pool:
        yield from pool.imap(_worker, tasks, chunksize=max(1, min(16, len(tasks) // (4 * jobs))))


def _single_threaded_blas() -> None:
    threadpool_limits(limits=1, user_api="blas")
