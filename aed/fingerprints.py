"""Fingerprints that make two HIL records comparable: the front end, the patch store, the evaluated subset.

Each is a sha256 hex digest over a canonical text, so that equal inputs give equal digests on every machine.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aed.records import sha256_file

# The patch store files that define its content. Anything else in the folder (a manifest another step writes,
# a lock file) is left out on purpose: it describes the store, it is not the data.
STORE_FILES = ("index.csv", "classes.json")
SHARD_GLOB = "shard-*.npy"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def frontend_sha256(config: Any) -> str:
    """sha256 of the canonical JSON of a front-end config dataclass (aed.features.FeatureConfig)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a FeatureConfig instance, got {type(config).__name__}")
    return hashlib.sha256(canonical_json(dataclasses.asdict(config)).encode()).hexdigest()


def dataset_sha256(store_dir: Path) -> str:
    """sha256 over the patch store's index.csv, classes.json and shard-*.npy files (name and content hash)."""
    store_dir = Path(store_dir)
    names = [*STORE_FILES, *(path.name for path in store_dir.glob(SHARD_GLOB))]
    for name in STORE_FILES:
        if not (store_dir / name).is_file():
            raise FileNotFoundError(
                f"{store_dir / name}: missing; is {store_dir} a patch store written by `aed patch`?"
            )
    return dataset_digest({name: sha256_file(store_dir / name) for name in names})


def dataset_digest(file_sha256: Mapping[str, str]) -> str:
    """dataset_sha256 from file hashes already known ({file name: sha256}, e.g. a verified store manifest), so
    that the store is not read twice; files other than the store's own are left out."""
    shards = sorted(name for name in file_sha256 if fnmatch.fnmatchcase(name, SHARD_GLOB))
    digest = hashlib.sha256()
    for name in [*STORE_FILES, *shards]:
        digest.update(f"{name}:{file_sha256[name]}\n".encode())
    return digest.hexdigest()


def arrays_sha256(*arrays: Any, names: Iterable[str] = ()) -> str:
    """sha256 of in-memory arrays (an evaluation set not read from a store) and class names."""
    import numpy as np

    digest = hashlib.sha256()
    for array in arrays:
        data = np.ascontiguousarray(array)
        digest.update(f"{data.dtype.str}{data.shape}".encode())
        digest.update(data.tobytes() if data.dtype != object else canonical_json(data.tolist()).encode())
    digest.update(canonical_json(list(names)).encode())
    return digest.hexdigest()


def eval_set_sha256(clip_ids: Iterable[Any], n_patches: int) -> str:
    """sha256 over the sorted distinct evaluated clip ids and the number of evaluated patches."""
    clips = sorted({str(clip) for clip in clip_ids})
    return hashlib.sha256(canonical_json({"clips": clips, "patches": int(n_patches)}).encode()).hexdigest()


def short(value: Any, width: int = 48) -> str:
    """A value for a one-line message: long hashes and lists are shortened, the rest shown as JSON."""
    if isinstance(value, str) and len(value) == 64 and all(ch in "0123456789abcdef" for ch in value):
        return value[:12] + "…"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) <= width:
        return text
    tail = width // 3
    return text[: width - tail - 1] + "…" + text[-tail:]
