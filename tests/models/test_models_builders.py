from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from aed.models import HEAD_NAME, WeightsError, build_backbone, build_yamnet_256, load_h5_weights
from aed.models.weights import YAMNET_256_H5, read_h5_arrays


def test_yamnet_256_structure_and_weights(yamnet_dir: Path) -> None:
    model = build_yamnet_256(10)
    assert model.input_shape == (None, 64, 96, 1)
    assert model.output_shape == (None, 10)
    backbone = model.get_layer("yamnet_backbone")
    assert backbone.count_params() == 135_104  # ST's figure: 44 arrays, 135 104 values
    assert model.get_layer(HEAD_NAME).count_params() == 2_570
    arrays = read_h5_arrays(yamnet_dir / YAMNET_256_H5)
    assert len(arrays) == 44
    np.testing.assert_array_equal(
        backbone.get_layer("layer6_pointwise_conv").kernel.numpy(), arrays["layer6_pointwise_conv/kernel"]
    )
    np.testing.assert_array_equal(
        backbone.get_layer("layer3_depthwise_conv_bn").moving_variance.numpy(),
        arrays["layer3_depthwise_conv_bn/moving_variance"],
    )


def test_permute_feeds_frames_first(yamnet_dir: Path) -> None:
    """The network's own transpose must equal feeding the backbone (frames, mels) directly."""
    model = build_yamnet_256(4)
    backbone = model.get_layer("yamnet_backbone")
    x = np.random.default_rng(1).normal(-4, 2, size=(2, 64, 96, 1)).astype(np.float32)
    direct = backbone(np.transpose(x, (0, 2, 1, 3))).numpy()
    via_model = model.get_layer("mels_frames_to_frames_mels")(x)
    np.testing.assert_allclose(backbone(via_model).numpy(), direct, rtol=1e-5, atol=1e-6)


def test_wrong_shape_names_the_layer(tmp_path: Path) -> None:
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as handle:
        handle["model_weights/m/layer1/conv/kernel:0"] = np.zeros((3, 3, 1, 16), np.float32)  # 16 != 32
        for name in ("beta", "moving_mean", "moving_variance"):
            handle[f"model_weights/m/layer1/conv/bn/{name}:0"] = np.zeros(32, np.float32)
    with pytest.raises(WeightsError, match=r"layer1_conv.*\(3, 3, 1, 16\)"):
        load_h5_weights(build_backbone(1), path)


def test_missing_array_names_the_layer(tmp_path: Path) -> None:
    path = tmp_path / "partial.h5"
    with h5py.File(path, "w") as handle:
        handle["layer1/conv/kernel:0"] = np.zeros((3, 3, 1, 32), np.float32)
    with pytest.raises(WeightsError, match="layer1_conv_bn"):
        load_h5_weights(build_backbone(1), path)


def test_wrong_sha256_is_refused(yamnet_dir: Path) -> None:
    with pytest.raises(WeightsError, match="does not match the pinned"):
        load_h5_weights(build_backbone(6), yamnet_dir / YAMNET_256_H5, sha256="0" * 64)


def test_not_hdf5_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.h5"
    path.write_bytes(b"not an hdf5 file")
    with pytest.raises(WeightsError, match="junk.h5"):
        load_h5_weights(build_backbone(1), path)


def test_split_network_is_the_same_model(yamnet_dir: Path) -> None:
    """prefix -> tail equals the full network, and fine-tuning unfreezes exactly the last blocks' convs."""
    from aed.training.network import build_split_network

    net = build_split_network("yamnet_256", 5, fine_tune_blocks=2)
    assert net.trainable_blocks == (5, 6)
    assert net.prefix.output_shape == (None, 24, 16, 128)  # output of block 4
    x = np.random.default_rng(2).normal(-4, 2, size=(3, 64, 96, 1)).astype(np.float32)
    np.testing.assert_allclose(net.tail(net.prefix(x)).numpy(), net.full(x).numpy(), rtol=1e-5, atol=1e-6)
    net.set_fine_tuning(True)
    trainable = sorted(w.path for w in net.tail.trainable_weights)
    assert trainable == [
        "layer5_depthwise_conv/kernel",
        "layer5_pointwise_conv/kernel",
        "layer6_depthwise_conv/kernel",
        "layer6_pointwise_conv/kernel",
        "new_head/bias",
        "new_head/kernel",
    ]
    assert net.prefix.trainable_weights == []
    frozen = build_split_network("yamnet_256", 5, fine_tune_blocks=0)
    assert frozen.prefix.output_shape == (None, 256)  # the embedding: only the head trains
