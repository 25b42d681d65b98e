"""YAMNet-256 / YAMNet-1024 builders with pretrained backbones, for any number of classes (imports Keras;
`aed.models` exports these names lazily)."""

from __future__ import annotations

from pathlib import Path

import keras

from aed.models.weights import (
    WeightsError,
    check_sha256,
    load_h5_weights,
    load_tflite_weights,
    load_yamnet_256_weights,
)
from aed.models.yamnet import (
    BACKBONE_NAME,
    HEAD_NAME,
    MODEL_SPECS,
    PATCH_SHAPE,
    ModelSpec,
    build_backbone,
    build_classifier,
    build_head_model,
)

MODEL_NAMES = tuple(MODEL_SPECS)

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
    "load_backbone",
]


def load_backbone(
    model_name: str,
    pretrained: bool = True,
    yamnet_h5: Path | None = None,
    yamnet_h5_sha256: str | None = None,
) -> keras.Model:
    """The backbone of `model_name` (ends in GAP), with pretrained weights unless pretrained=False.

    YAMNet-1024 uses Google's float yamnet.h5 when a path is given (its sha256 is then required), else the
    TFLite YAMNet import (ReLU6, folded batch norm)."""
    if model_name not in MODEL_SPECS:
        raise ValueError(f"unknown model {model_name!r}; known: {list(MODEL_SPECS)}")
    spec = MODEL_SPECS[model_name]
    flavour = "bn" if (spec.flavour == "bn" or yamnet_h5 is not None) else "bias"
    backbone = build_backbone(spec.n_blocks, flavour)
    if not pretrained:
        return backbone
    if model_name == "yamnet_256" and yamnet_h5 is None:
        load_yamnet_256_weights(backbone)
    elif yamnet_h5 is not None:
        if not yamnet_h5_sha256:
            raise WeightsError(f"{yamnet_h5}: a sha256 must be pinned for a user-supplied yamnet.h5")
        load_h5_weights(backbone, Path(yamnet_h5), yamnet_h5_sha256)
    else:
        load_tflite_weights(backbone)
    return backbone


def build_model(
    model_name: str,
    n_classes: int,
    dropout: float = 0.0,
    hidden_units: int = 0,
    pretrained: bool = True,
    yamnet_h5: Path | None = None,
    yamnet_h5_sha256: str | None = None,
) -> keras.Model:
    """Input (64, 96, 1) -> Permute -> pretrained backbone -> GAP -> [dropout/hidden] -> Dense softmax `new_head`."""
    backbone = load_backbone(model_name, pretrained, yamnet_h5, yamnet_h5_sha256)
    return build_classifier(backbone, n_classes, dropout, hidden_units, name=model_name)


def build_yamnet_256(n_classes: int, dropout: float = 0.0, pretrained: bool = True) -> keras.Model:
    """The reference YAMNet-256 transfer-learning network (backbone from ST's yamnet_256_f32.h5)."""
    return build_model("yamnet_256", n_classes, dropout=dropout, pretrained=pretrained)


def build_yamnet_1024(
    n_classes: int,
    dropout: float = 0.0,
    pretrained: bool = True,
    yamnet_h5: Path | None = None,
    yamnet_h5_sha256: str | None = None,
) -> keras.Model:
    """Full 14-block YAMNet with a new head (backbone from yamnet.h5 if given, else the TFLite import)."""
    return build_model("yamnet_1024", n_classes, dropout, 0, pretrained, yamnet_h5, yamnet_h5_sha256)


# Re-exported for callers that check a user file before building.
check_weights_sha256 = check_sha256
