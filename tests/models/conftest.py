"""Fixtures of the models area: the YAMNet mirror (through AED_MODELS_MIRROR) and tiny synthetic patch stores."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from aed.patchstore import write_patch_store

REPO = Path(__file__).resolve().parents[2]


def _mirror() -> Path:
    return Path(os.environ.get("AED_MODELS_MIRROR") or REPO.parent / "shared" / "models" / "yamnet")


@pytest.fixture(scope="session")
def yamnet_dir() -> Path:
    path = _mirror()
    if not (path / "yamnet_256_f32.h5").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"YAMNet mirror missing at {path} (AED_MODELS_MIRROR)")
        pytest.skip(f"YAMNet mirror missing at {path}")
    os.environ["AED_MODELS_MIRROR"] = str(path)
    return path


def synthetic_store(
    root: Path,
    n_classes: int = 3,
    clips_per_class_per_fold: int = 2,
    folds: int = 5,
    patches: int = 2,
    seed: int = 0,
) -> Path:
    """Patch store whose classes differ by a per-class frequency band, so even a tiny model can learn them."""
    rng = np.random.default_rng(seed)
    names = [f"class_{i}" for i in range(n_classes)]
    clips = []
    for fold in range(1, folds + 1):
        for label_index, name in enumerate(names):
            for k in range(clips_per_class_per_fold):
                x = rng.normal(-6.0, 1.0, size=(patches, 64, 96, 1)).astype(np.float32)
                band = slice(label_index * 64 // n_classes, (label_index + 1) * 64 // n_classes)
                x[:, band] += 5.0
                meta = {"clip_id": f"{fold}-{name}-{k}", "label": name, "fold": fold, "split": "train"}
                clips.append((meta, x))
    write_patch_store(root, clips, names)
    return root


@pytest.fixture()
def tiny_store(tmp_path: Path) -> Path:
    return synthetic_store(tmp_path / "patches")
