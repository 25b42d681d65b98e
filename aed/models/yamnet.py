"""YAMNet backbones (Google's AudioSet MobileNetV1) and the transfer-learning network around them.

Layer names follow Google's YAMNet with "/" replaced by "_" (Keras 3 refuses "/" in names), so weights from
ST's yamnet_256_f32.h5 or Google's yamnet.h5 map onto them by name.

Two flavours of the same topology:
- "bn":   conv without bias + BatchNorm(eps 1e-4, scale=False) + ReLU  (Google's / ST's float Keras model);
- "bias": conv with bias (batch norm folded in) + ReLU6                 (the TF Hub TFLite YAMNet, which was
          retrained with ReLU6 and whose batch norm is already folded into the conv biases).
"""

from __future__ import annotations

import keras

# The model names and their shapes live in aed.model_specs (no Keras); re-exported for the builders' callers.
from aed.model_specs import MODEL_SPECS as MODEL_SPECS
from aed.model_specs import Flavour
from aed.model_specs import ModelSpec as ModelSpec

PATCH_SHAPE = (64, 96, 1)  # (mels, frames, 1): the patch store layout; the network transposes it itself
BACKBONE_NAME = "yamnet_backbone"
HEAD_NAME = "new_head"
BN_EPSILON = 1e-4

# (kind, stride, filters) for Google's 14 layers: one full conv, then 13 depthwise-separable blocks.
YAMNET_LAYERS: tuple[tuple[str, int, int], ...] = (
    ("conv", 2, 32),
    ("sep", 1, 64),
    ("sep", 2, 128),
    ("sep", 1, 128),
    ("sep", 2, 256),
    ("sep", 1, 256),
    ("sep", 2, 512),
    ("sep", 1, 512),
    ("sep", 1, 512),
    ("sep", 1, 512),
    ("sep", 1, 512),
    ("sep", 1, 512),
    ("sep", 2, 1024),
    ("sep", 1, 1024),
)


def _conv_unit(x, prefix: str, flavour: Flavour, layer: keras.layers.Layer):
    """conv (or depthwise conv) -> [bn] -> relu / relu6."""
    x = layer(x)
    if flavour == "bn":
        x = keras.layers.BatchNormalization(
            epsilon=BN_EPSILON, center=True, scale=False, name=f"{prefix}_bn"
        )(x)
        return keras.layers.ReLU(name=f"{prefix}_relu")(x)
    return keras.layers.ReLU(max_value=6.0, name=f"{prefix}_relu")(x)


def build_backbone(n_blocks: int, flavour: Flavour = "bn", name: str = BACKBONE_NAME) -> keras.Model:
    """YAMNet layers 1..n_blocks plus global average pooling; input (frames 96, mels 64, 1)."""
    if not 1 <= n_blocks <= len(YAMNET_LAYERS):
        raise ValueError(f"n_blocks must be in [1, {len(YAMNET_LAYERS)}], got {n_blocks}")
    use_bias = flavour == "bias"
    inputs = keras.Input(shape=(96, 64, 1), name="frames_mels")
    x = inputs
    for number, (kind, stride, filters) in enumerate(YAMNET_LAYERS[:n_blocks], start=1):
        block = f"layer{number}"
        if kind == "conv":
            conv = keras.layers.Conv2D(
                filters, 3, strides=stride, padding="same", use_bias=use_bias, name=f"{block}_conv"
            )
            x = _conv_unit(x, f"{block}_conv", flavour, conv)
            continue
        depthwise = keras.layers.DepthwiseConv2D(
            3, strides=stride, padding="same", use_bias=use_bias, name=f"{block}_depthwise_conv"
        )
        x = _conv_unit(x, f"{block}_depthwise_conv", flavour, depthwise)
        pointwise = keras.layers.Conv2D(
            filters, 1, padding="same", use_bias=use_bias, name=f"{block}_pointwise_conv"
        )
        x = _conv_unit(x, f"{block}_pointwise_conv", flavour, pointwise)
    x = keras.layers.GlobalAveragePooling2D(name="global_average_pooling")(x)
    return keras.Model(inputs, x, name=name)


def block_of(layer_name: str) -> int | None:
    """Block number of a backbone layer name (`layer7_pointwise_conv_bn` -> 7), else None."""
    if not layer_name.startswith("layer"):
        return None
    digits = layer_name[len("layer") :].split("_", 1)[0]
    return int(digits) if digits.isdigit() else None


def build_classifier(
    backbone: keras.Model, n_classes: int, dropout: float = 0.0, hidden_units: int = 0, name: str = "yamnet"
) -> keras.Model:
    """Input (64, 96, 1) -> Permute to (96, 64, 1) -> backbone (ends in GAP) -> head -> softmax `new_head`."""
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    inputs = keras.Input(shape=PATCH_SHAPE, name="patch")
    x = keras.layers.Permute((2, 1, 3), name="mels_frames_to_frames_mels")(inputs)
    x = backbone(x)
    x = classification_head(x, n_classes, dropout, hidden_units)
    return keras.Model(inputs, x, name=name)


def classification_head(x, n_classes: int, dropout: float = 0.0, hidden_units: int = 0):
    """Optional dropout / hidden ReLU layer, then Dense softmax named `new_head` (the reference's name)."""
    if hidden_units:
        if dropout:
            x = keras.layers.Dropout(dropout, name="head_hidden_dropout")(x)
        x = keras.layers.Dense(hidden_units, activation="relu", name="head_hidden")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    return keras.layers.Dense(n_classes, activation="softmax", name=HEAD_NAME)(x)


def build_head_model(
    embedding_size: int, n_classes: int, dropout: float = 0.0, hidden_units: int = 0
) -> keras.Model:
    """The head on its own (embedding in, softmax out): trained on cached embeddings, then grafted on."""
    inputs = keras.Input(shape=(embedding_size,), name="embedding")
    return keras.Model(inputs, classification_head(inputs, n_classes, dropout, hidden_units), name="head")
