"""On-disk patch store: sharded float32 .npy arrays (memory-mappable) plus a patch index.

Layout of a store directory:
    shard-00000.npy ...   float32 (n, 64, 96, 1) log-mel patches
    index.csv             one row per patch: clip_id, patch, label, label_index, fold, split, shard, row
    classes.json          {"class_names": [...]}: model output order (sorted, Python string order)
    .aed-output.json      marker and manifest: every file's size and sha256 and the params hash (aed.outputs)

A store is written in a temporary sibling and swapped in whole; the loader refuses one whose files are not the
ones listed in its manifest, so an interrupted or concurrent writer can never leave a store that loads mixed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from aed.outputs import OutputError, OutputSpec, replacing, verify_manifest

INDEX_COLUMNS = ["clip_id", "patch", "label", "label_index", "fold", "split", "shard", "row"]


STEP = "patch"


class PatchStoreError(OutputError):
    pass


@dataclass
class PatchStore:
    root: Path
    index: pd.DataFrame
    class_names: list[str]
    params_sha256: str | None = None
    file_sha256: dict[str, str] = field(
        default_factory=dict
    )  # {file name: sha256}, from the verified manifest

    def shard(self, number: int) -> np.ndarray:
        return np.load(self.root / shard_name(number), mmap_mode="r")

    def patches(self, rows: pd.DataFrame | None = None) -> np.ndarray:
        """Gather the patches of the given index rows (default: all), in row order, as one float32 array."""
        rows = self.index if rows is None else rows
        out = np.empty((len(rows), *self.patch_shape), dtype=np.float32)
        for shard_number, group in rows.groupby("shard", sort=False):
            positions = np.flatnonzero((rows["shard"] == shard_number).to_numpy())
            out[positions] = self.shard(int(shard_number))[group["row"].to_numpy()]
        return out

    @property
    def patch_shape(self) -> tuple[int, ...]:
        return tuple(self.shard(0).shape[1:]) if len(self.index) else (64, 96, 1)

    def labels(self, rows: pd.DataFrame | None = None) -> np.ndarray:
        rows = self.index if rows is None else rows
        return rows["label_index"].to_numpy(dtype=np.int64)


def shard_name(number: int) -> str:
    return f"shard-{number:05d}.npy"


def write_patch_store(
    root: Path,
    clips: Iterable[tuple[dict, np.ndarray]],
    class_names: list[str],
    shard_size: int = 4096,
    params: object = None,
    sources: dict[str, Path | None] | None = None,
) -> pd.DataFrame:
    """Write (clip metadata, patches) pairs as shards; returns the index. Clip metadata needs clip_id, label,
    fold and split. The store is written in a temporary sibling and replaces root only when complete
    (aed.outputs.replacing): root must be absent, empty or an earlier store, and none of `sources`; params (the
    step's parameters) are hashed into the manifest. A clip without patches or with non-finite values stops
    the write, and root keeps its old content."""
    with replacing(root, OutputSpec(STEP), sources, params) as staging:
        index = _write_shards(staging, clips, class_names, shard_size)
    return index


def _write_shards(
    root: Path, clips: Iterable[tuple[dict, np.ndarray]], class_names: list[str], shard_size: int
) -> pd.DataFrame:
    label_index = {name: i for i, name in enumerate(class_names)}
    rows: list[dict] = []
    pending: list[np.ndarray] = []
    pending_count = 0
    shard_number = 0

    def flush() -> None:
        nonlocal pending, pending_count, shard_number
        if pending_count:
            np.save(root / shard_name(shard_number), np.concatenate(pending).astype(np.float32, copy=False))
            shard_number += 1
            pending, pending_count = [], 0

    for clip, patches in clips:
        _check_patches(clip["clip_id"], patches)
        for number in range(len(patches)):
            if pending_count == shard_size:
                flush()
            rows.append(
                {
                    "clip_id": clip["clip_id"],
                    "patch": number,
                    "label": clip["label"],
                    "label_index": label_index[clip["label"]],
                    "fold": clip["fold"],
                    "split": clip["split"],
                    "shard": shard_number,
                    "row": pending_count,
                }
            )
            pending.append(patches[number : number + 1])
            pending_count += 1
    flush()
    if not rows:
        raise PatchStoreError("no clip to write: the patch store would be empty; nothing written")
    index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    index.to_csv(root / "index.csv", index=False)
    (root / "classes.json").write_text(json.dumps({"class_names": list(class_names)}, indent=2) + "\n")
    return index


def _check_patches(clip_id: str, patches: np.ndarray) -> None:
    """A clip that gives no patch would silently drop out of training and evaluation; a non-finite value would
    poison every model trained on the store. Both stop the write."""
    if len(patches) == 0:
        raise PatchStoreError(
            f"clip {clip_id}: gives no patch (shorter than patch.patch_frames after silence removal, or "
            "silent); nothing written"
        )
    finite = np.isfinite(patches)
    if not finite.all():
        raise PatchStoreError(
            f"clip {clip_id}: {int(finite.size - finite.sum())} of {finite.size} patch values are NaN or "
            "infinite (check patch.fmin, patch.fmax, patch.log_offset); nothing written"
        )


def load_patch_store(root: Path) -> PatchStore:
    root = Path(root)
    index_path, classes_path = root / "index.csv", root / "classes.json"
    for required in (index_path, classes_path):
        if not required.exists():
            raise PatchStoreError(f"{required}: missing; is {root} a patch store written by `aed patch`?")
    try:
        manifest = verify_manifest(root, STEP)
    except OutputError as error:
        raise PatchStoreError(str(error)) from None
    index = pd.read_csv(index_path, dtype={"clip_id": str, "label": str, "split": str})
    missing = [column for column in INDEX_COLUMNS if column not in index.columns]
    if missing:
        raise PatchStoreError(f"{index_path}: missing columns {missing}")
    class_names = json.loads(classes_path.read_text())["class_names"]
    unknown = sorted(set(index["label"]) - set(class_names))
    if unknown:
        raise PatchStoreError(f"{index_path}: labels {unknown} are not in {classes_path}")
    hashes = {name: entry["sha256"] for name, entry in manifest["files"].items()}
    return PatchStore(root, index, class_names, manifest.get("params_sha256"), hashes)
