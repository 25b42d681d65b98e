"""Clips -> log-mel patches, in parallel over clips (features are per clip, so clips are independent)."""

from __future__ import annotations

import dataclasses
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
    # One BLAS thread per process: parallelism is over clips, and nested threads only contend.
    with threadpool_limits(limits=1, user_api="blas"):
        yield from ordered_map(
            _worker,
            tasks,
            jobs,
            lambda task: str(task[0]),
            initializer=_single_threaded_blas,
            preload=[__name__],
        )


def _single_threaded_blas() -> None:
    threadpool_limits(limits=1, user_api="blas")
