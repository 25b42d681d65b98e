"""Where the pretrained YAMNet assets are (AED_MODELS_MIRROR, else the shared mirror beside the clone), without
Keras: a step checks them in its first second, before it imports TensorFlow and reads any data."""

from __future__ import annotations

import os
from pathlib import Path

from aed.model_specs import check_model_name

YAMNET_256_H5 = "yamnet_256_f32.h5"
YAMNET_256_H5_SHA256 = "dfa6066b3f3bece880e9813b05cffb6a8328fe3da832f62401ce553dd380d2b3"
YAMNET_TFLITE = "lite-model_yamnet_classification_tflite_1.tflite"
YAMNET_TFLITE_SHA256 = "10c95ea3eb9a7bb4cb8bddf6feb023250381008177ac162ce169694d05c317de"
# Google's float yamnet.h5 (https://storage.googleapis.com/audioset/yamnet.h5) is not in the mirror; a user who
# supplies it must also supply its sha256 (params: models.yamnet_1024_h5_sha256), which is then enforced.

ENV = "AED_MODELS_MIRROR"
# The clone's folder; the Makefile's default is $(CURDIR)/../shared/models/yamnet, the same folder.
CLONE = Path(__file__).resolve().parents[2]


class WeightsError(ValueError):
    pass


def default_mirror() -> Path | None:
    """../shared/models/yamnet beside the clone when it exists (the Makefile's rule, so that `dvc repro` and
    `aed train` outside make find the same assets)."""
    candidate = CLONE.parent / "shared" / "models" / "yamnet"
    return candidate if candidate.is_dir() else None


def models_mirror() -> Path:
    """The YAMNet weights folder: AED_MODELS_MIRROR when set (and not empty), else default_mirror()."""
    value = os.environ.get(ENV, "").strip()
    if value:
        return Path(value).expanduser()
    found = default_mirror()
    if found is None:
        raise WeightsError(
            f"{ENV} is not set and there is no {CLONE.parent / 'shared' / 'models' / 'yamnet'}: "
            "point it at the YAMNet weights folder"
        )
    return found


def mirror_asset(model_name: str) -> str:
    """The mirror file the pretrained backbone of `model_name` is read from (no user yamnet.h5 given)."""
    return YAMNET_256_H5 if check_model_name(model_name) == "yamnet_256" else YAMNET_TFLITE


def check_mirror(model_name: str, user_weights: bool = False) -> Path | None:
    """The mirror file `model_name` will need, after checking that it is there (None when the user's own yamnet.h5
    replaces it). One-line WeightsError naming the file and the variable otherwise."""
    if user_weights:
        return None
    mirror = models_mirror()
    path = mirror / mirror_asset(model_name)
    if not path.is_file():
        where = f"{ENV}={os.environ[ENV]}" if os.environ.get(ENV, "").strip() else "the default mirror"
        raise WeightsError(f"{path}: {model_name}'s pretrained weights not found ({where})")
    return path
