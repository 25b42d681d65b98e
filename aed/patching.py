"""Clips -> log-mel patches, in parallel over clips (features are per clip, so clips are independent)."""

from __future__ import annotations

import ctypes
import dataclasses
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from aed.audio import load_audio
from aed.features import FeatureConfig, waveform_to_patches
from aed.params import bounded
from aed.workers import ordered_map

# Front-end keys a store's identity leaves out while they have their reference value: stores written before they
# could be set keep their params hash (and dvc.lock their output hash); another value makes another store.
IDENTITY_OMITTED_AT_DEFAULT = ("silence_frame",)

# glibc malloc options (malloc.h): M_TRIM_THRESHOLD and M_MMAP_THRESHOLD
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# Blocks up to this size come from the heap, and freed memory up to twice it stays there: above the few MB a clip
# of up to max_duration_s allocates at once (frames and spectrum of a 10 s clip: about 4 MB each).
_HEAP_BLOCKS_BYTES = 32 << 20


@dataclass(frozen=True)
class PatchParams(FeatureConfig):
    """The `patch` section of params.yaml: the front end (FeatureConfig) and how the patch store is written."""

    shard_size: int = bounded(4096, 1)  # patches per .npy shard
    jobs: int = bounded(0, 0)  # clips computed at once; 0: every core

    def feature_config(self) -> FeatureConfig:
        """The front end alone (what export-firmware and the HIL job fingerprint and tabulate)."""
        return FeatureConfig(
            **{field.name: getattr(self, field.name) for field in dataclasses.fields(FeatureConfig)}
        )

    def store_identity(self, class_names: list[str]) -> dict:
        """The settings that make the store, hashed into its manifest (jobs only changes the speed)."""
        identity = {**dataclasses.asdict(self), "class_names": class_names}
        identity.pop("jobs")
        default = FeatureConfig()
        for name in IDENTITY_OMITTED_AT_DEFAULT:
            if identity[name] == getattr(default, name):
                identity.pop(name)
        return identity


def class_order(labels: Iterable[str], configured: Iterable[str] | None = None) -> list[str]:
    """The model's output order: `validate.classes` when set, else the labels found; sorted either way (the
    reference's rule), so that the patch store, the firmware header and every record agree."""
    configured = list(configured or [])
    twice = sorted({name for name in configured if configured.count(name) > 1})
    if twice:  # one label, two model outputs
        raise ValueError(f"classes: {twice} listed more than once")
    return sorted(configured or set(labels))


def clip_patches(path: Path, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    signal = load_audio(path, config.sample_rate, config.max_duration_s)
    return waveform_to_patches(signal, config)


def _worker(task: tuple[Path, FeatureConfig]) -> np.ndarray:
    return clip_patches(*task)


def patch_clips(
    paths: list[Path], config: FeatureConfig = FeatureConfig(), jobs: int = 0
) -> Iterator[np.ndarray]:
    """Patches of each clip, in input order. jobs=0 uses every core; 1 runs in this process."""
    tasks = [(Path(path), config) for path in paths]
    keep_freed_memory()  # the in-process path (jobs 1, or one clip); workers do it in _setup_worker
    # One BLAS thread per process: parallelism is over clips, and nested threads only contend.
    with threadpool_limits(limits=1, user_api="blas"):
        yield from ordered_map(
            _worker,
            tasks,
            jobs,
            lambda task: str(task[0]),
            initializer=_setup_worker,
            preload=[__name__],
        )


def _setup_worker() -> None:
    threadpool_limits(limits=1, user_api="blas")
    keep_freed_memory()


def keep_freed_memory() -> bool:
    """Let glibc keep freed memory in the process instead of handing it back to the kernel at once.

    Why: each clip allocates and frees arrays of a few MB (decoded samples, frames, spectrum, mel energies). With
    glibc's defaults these come from fresh mmap'ed pages or a heap trimmed after every free, so every clip pays
    the kernel's page faults and zeroing again: on ESC-10 that was half of the patcher's CPU time (2.2 s of 400
    clips down to 1.05 s, both under load). Only where memory comes from changes, not a computed value: the patch
    store stays byte-identical. A process that patches keeps up to about 64 MB of freed memory for reuse.
    Returns whether the setting took (False off glibc, e.g. macOS or musl, where nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, _HEAP_BLOCKS_BYTES) and mallopt(_M_TRIM_THRESHOLD, 2 * _HEAP_BLOCKS_BYTES)
    )
