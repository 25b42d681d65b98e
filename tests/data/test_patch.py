from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aed.features import FeatureConfig
from aed.patching import PatchParams, clip_patches
from aed.patchstore import PatchStoreError, load_patch_store
from components.patch import run
from tests.conftest import tone, write_audio


def small_manifest(tmp_path: Path) -> Path:
    rows = []
    for number, (label, seconds) in enumerate([("b", 5.0), ("a", 0.5), ("b", 2.0), ("a", 10.0)]):
        path = write_audio(tmp_path / "raw" / f"c{number}.flac", tone(seconds, frequency=300 + 100 * number))
        rows.append(
            {
                "clip_id": f"c{number}",
                "path": path.name,
                "label": label,
                "fold": number % 2 + 1,
                "split": "",
                "duration_s": seconds,
            }
        )
    pd.DataFrame(rows).to_csv(tmp_path / "validated.csv", index=False)
    return tmp_path / "validated.csv"


@pytest.mark.parametrize("jobs", [1, 2])
def test_patch_store_holds_every_clip_in_order_with_labels_and_folds(tmp_path, jobs):
    manifest = small_manifest(tmp_path)
    params = PatchParams(shard_size=5, jobs=jobs)
    metrics = run(params, manifest, tmp_path / "raw", tmp_path / "patches", tmp_path / "patch.json")
    store = load_patch_store(tmp_path / "patches")
    assert store.class_names == ["a", "b"]
    assert metrics["n_patches"] == 6 + 1 + 2 + 13 == len(store.index)
    assert len(list((tmp_path / "patches").glob("shard-*.npy"))) == 5  # 22 patches in shards of 5
    assert isinstance(store.shard(0), np.memmap)
    clip = store.index[store.index["clip_id"] == "c3"]
    assert (
        list(clip["patch"]) == list(range(13))
        and set(clip["label_index"]) == {0}
        and set(clip["fold"]) == {2}
    )
    np.testing.assert_array_equal(store.patches(clip), clip_patches(tmp_path / "raw" / "c3.flac"))
    assert metrics["clips_without_patches"] == 0


def test_class_order_can_be_fixed_by_params(tmp_path):
    manifest = small_manifest(tmp_path)
    run(PatchParams(jobs=1), manifest, tmp_path / "raw", tmp_path / "p", None, class_names=["b", "a", "z"])
    store = load_patch_store(tmp_path / "p")
    assert store.class_names == ["a", "b", "z"]  # always sorted: model index i is the i-th name


def test_loading_something_that_is_not_a_patch_store(tmp_path):
    with pytest.raises(PatchStoreError, match=r"index\.csv: missing"):
        load_patch_store(tmp_path)


def test_a_class_listed_twice_is_refused_before_any_clip_is_read(tmp_path):
    manifest = small_manifest(tmp_path)
    with pytest.raises(ValueError, match=r"classes: \['a'\] listed more than once"):
        run(
            PatchParams(jobs=1), manifest, tmp_path / "raw", tmp_path / "p", None, class_names=["a", "b", "a"]
        )
    assert not (tmp_path / "p").exists()


def test_the_front_end_limits_apply_to_the_patch_section(tmp_path):
    from aed.params import ParamsError, from_dict

    # Ranges declared once on FeatureConfig, checked for the patch section and for the front end alone.
    for cls in (PatchParams, FeatureConfig):
        with pytest.raises(ParamsError, match=r"^patch\.n_mels: 4 is out of range \[8, inf\]$"):
            from_dict(cls, {"n_mels": 4}, "patch")
    with pytest.raises(ParamsError, match=r"^patch\.jobs: -1 is out of range"):
        from_dict(PatchParams, {"jobs": -1}, "patch")
    assert from_dict(PatchParams, {"silence_frame": 1600}, "patch").feature_config() == FeatureConfig(
        silence_frame=1600
    )


def test_the_store_identity_changes_with_silence_frame_only_off_its_default(tmp_path):
    default = PatchParams().store_identity(["a"])
    assert "silence_frame" not in default and "jobs" not in default  # a store made before keeps its hash
    assert PatchParams(silence_frame=1600).store_identity(["a"]) == {**default, "silence_frame": 1600}
    assert PatchParams(jobs=3).store_identity(["a"]) == default
