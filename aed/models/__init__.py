"""YAMNet-256 / YAMNet-1024 builders with pretrained backbones, for any number of classes.

The builders (aed.models.builders) import Keras, seconds to load; `from aed.models import build_model` loads them
on first use, so that the light submodules (specs, config, mirror) and `aed --help` never pay for it."""

from __future__ import annotations

from typing import Any

__all__ = [
    "BACKBONE_NAME",
    "HEAD_NAME",
    "MODEL_NAMES",
    "MODEL_SPECS",
    "PATCH_SHAPE",
    "ModelSpec",
    "WeightsError",
    "build_backbone",
    "build_classifier",
    "build_head_model",
    "build_model",
    "build_yamnet_1024",
    "build_yamnet_256",
    "check_sha256",
    "check_weights_sha256",
    "load_backbone",
    "load_h5_weights",
    "load_tflite_weights",
    "load_yamnet_256_weights",
]


def __getattr__(name: str) -> Any:
    """PEP 562: the builders' names, imported when first asked for."""
    if name not in __all__:
        raise AttributeError(f"module 'aed.models' has no attribute {name!r}")
    from aed.models import builders

    return getattr(builders, name)
