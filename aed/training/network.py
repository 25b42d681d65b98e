"""The transfer-learning network cut in two at a block boundary, sharing its layers.

    patch -> [prefix: Permute + frozen blocks 1..cut] -> features -> [tail: blocks cut+1..N, GAP, head] -> softmax

Features at the cut do not depend on the trainable part, so they are computed once per (augmented) patch and
cached. Training the tail on cached features is the same computation as training the whole network with the
prefix frozen: the prefix layers have no trainable weights and run in inference mode (batch norm included).
With fine_tune_blocks = 0 the cut is after GAP: the features are the embeddings and only the head trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras

from aed.models import MODEL_SPECS, build_head_model, load_backbone
from aed.models.yamnet import PATCH_SHAPE, block_of


@dataclass
class SplitNetwork:
    full: keras.Model  # patch -> softmax (what is saved, quantized and deployed)
    prefix: keras.Model  # patch -> features at the cut (always frozen)
    tail: keras.Model  # features -> softmax (fine-tuned blocks + head)
    to_embedding: keras.Model  # features -> GAP embedding (frozen tail blocks)
    head: keras.Model  # embedding -> softmax
    trainable_blocks: tuple[int, ...]

    def set_fine_tuning(self, enabled: bool) -> None:
        """Unfreeze the tail's conv layers; batch norm stays frozen (inference mode) on such small data."""
        for layer in self.tail.layers:
            if block_of(layer.name) in self.trainable_blocks and isinstance(
                layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D
            ):
                layer.trainable = enabled


def _chain(inputs, layers):
    x = inputs
    for layer in layers:
        x = layer(x)
    return x


def build_split_network(
    model_name: str,
    n_classes: int,
    fine_tune_blocks: int = 0,
    dropout: float = 0.0,
    hidden_units: int = 0,
    pretrained: bool = True,
    yamnet_h5: Path | None = None,
    yamnet_h5_sha256: str | None = None,
) -> SplitNetwork:
    spec = MODEL_SPECS[model_name]
    if not 0 <= fine_tune_blocks <= spec.n_blocks:
        raise ValueError(
            f"fine_tune_blocks must be in [0, {spec.n_blocks}] for {model_name}, got {fine_tune_blocks}"
        )
    backbone = load_backbone(model_name, pretrained, yamnet_h5, yamnet_h5_sha256)
    backbone.trainable = False
    layers = backbone.layers[1:]  # a plain chain after the input layer
    cut_block = spec.n_blocks - fine_tune_blocks
    if fine_tune_blocks:
        blocks = [block_of(layer.name) for layer in layers]
        kept = [i for i, block in enumerate(blocks) if block is not None and block <= cut_block]
        split_at = max(kept) + 1 if kept else 0  # every block trainable: the prefix is the Permute alone
    else:
        split_at = len(layers)  # after GAP
    prefix_layers, tail_layers = layers[:split_at], layers[split_at:]
    head = build_head_model(spec.embedding_size, n_classes, dropout, hidden_units)
    head_layers = head.layers[1:]

    patch = keras.Input(shape=PATCH_SHAPE, name="patch")
    permuted = keras.layers.Permute((2, 1, 3), name="mels_frames_to_frames_mels")(patch)
    prefix = keras.Model(patch, _chain(permuted, prefix_layers), name=f"{model_name}_prefix")
    feature_shape = tuple(prefix.output_shape[1:])
    features = keras.Input(shape=feature_shape, name="features")
    embedding = _chain(features, tail_layers)
    to_embedding = keras.Model(features, embedding, name=f"{model_name}_to_embedding")
    tail = keras.Model(features, _chain(embedding, head_layers), name=f"{model_name}_tail")

    full_in = keras.Input(shape=PATCH_SHAPE, name="patch")
    x = keras.layers.Permute((2, 1, 3), name="mels_frames_to_frames_mels")(full_in)
    full = keras.Model(full_in, _chain(backbone(x), head_layers), name=model_name)
    blocks = tuple(range(cut_block + 1, spec.n_blocks + 1)) if fine_tune_blocks else ()
    return SplitNetwork(full, prefix, tail, to_embedding, head, blocks)
