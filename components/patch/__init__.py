"""Step `patch`: validated manifest + raw audio -> patch store (sharded float32 .npy + index) and metrics."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

from aed.outputs import check_file_outputs
from aed.params import load_section
from aed.patching import PatchParams, class_order, patch_clips
from aed.records import write_record
from components.common import add_params_option

# pandas comes with aed.tables, aed.patchstore and aed.validation: imported where used (`aed --help` stays fast).


def run(
    params: PatchParams,
    manifest_path: Path,
    raw_dir: Path,
    patches_dir: Path,
    record_path: Path | None,
    class_names: list[str] | None = None,
) -> dict:
    """class_names (validate.classes) fixes the model output order (aed.patching.class_order)."""
    from aed.patchstore import PatchStoreError, write_patch_store
    from aed.tables import read_table

    manifest = read_table(manifest_path, ("clip_id", "path", "label", "duration_s"), "validated manifest")
    classes = class_order(manifest["label"], class_names)
    check_file_outputs(
        {"--metrics": record_path},
        {"manifest": manifest_path, "raw audio folder": raw_dir, "patch store": patches_dir},
    )
    clips = manifest.to_dict("records")
    if not clips:
        raise PatchStoreError(f"{manifest_path}: no clips; the patch store would be empty, nothing written")
    started = time.perf_counter()
    patches = patch_clips([raw_dir / clip["path"] for clip in clips], params.feature_config(), params.jobs)
    identity = params.store_identity(classes)
    sources = {"raw audio folder": raw_dir, "manifest": manifest_path}
    with closing(patches):  # on an error or a signal, the worker pool stops now, not at exit
        index = write_patch_store(
            patches_dir, zip(clips, patches, strict=True), classes, params.shard_size, identity, sources
        )
    seconds = time.perf_counter() - started
    audio_seconds = float(manifest["duration_s"].clip(upper=params.max_duration_s).sum())
    metrics = {
        "n_clips": len(manifest),
        "n_patches": len(index),
        "patch_shape": [params.n_mels, params.patch_frames, 1],
        "patches_per_class": dict(sorted(Counter(index["label"]).items())),
        "clips_without_patches": int(len(set(manifest["clip_id"]) - set(index["clip_id"]))),
        "seconds": round(seconds, 3),
        "patches_per_second": round(len(index) / seconds, 1) if seconds else None,
        "real_time_factor": round(audio_seconds / seconds, 1) if seconds else None,
    }
    if record_path:
        write_record(record_path, "patch", metrics, inputs={"manifest": manifest_path})
    return metrics


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("patch", help="compute the reference log-mel 64x96 patches")
    add_params_option(parser)
    parser.add_argument("--manifest", type=Path, default=Path("artifacts/validated.csv"))
    parser.add_argument("--raw-dir", type=Path, default=Path("data/raw"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/patches"))
    parser.add_argument("--metrics", type=Path, default=Path("reports/patch.json"))
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    from aed.validation.validate import ValidateParams

    params = load_section(args.params, "patch", PatchParams)
    classes = load_section(args.params, "validate", ValidateParams).classes
    metrics = run(params, args.manifest, args.raw_dir, args.out, args.metrics, classes)
    print(f"patch: { {k: metrics[k] for k in ('n_clips', 'n_patches', 'seconds', 'patches_per_second')} }")
    return 0
