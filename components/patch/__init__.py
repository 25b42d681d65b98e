"""Step `patch`: validated manifest + raw audio -> patch store (sharded float32 .npy + index) and metrics."""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from aed.features import FeatureConfig
from aed.outputs import check_file_outputs
from aed.params import bounded, load_section
from aed.patching import patch_clips
from aed.patchstore import PatchStoreError, write_patch_store
from aed.records import write_record
from aed.tables import read_table
from components.common import add_params_option


@dataclass
class PatchParams:
    sample_rate: int = bounded(16000, 8000, 48000)
    max_duration_s: float = bounded(10.0, 0.1)
    remove_silence: bool = True
    silence_top_db: float = bounded(60.0, 1.0)
    min_length_s: float = bounded(1.0, 0.0)
    n_fft: int = bounded(512, 64)
    win_length: int = bounded(400, 16)
    hop_length: int = bounded(160, 1)
    n_mels: int = bounded(64, 8)
    fmin: float = bounded(125.0, 0.0)
    fmax: float = bounded(7500.0, 1.0)
    log_offset: float = bounded(1e-4, 0.0)
    patch_frames: int = bounded(96, 1)
    patch_step: int = bounded(72, 1)
    shard_size: int = bounded(4096, 1)
    jobs: int = bounded(0, 0)

    def __post_init__(self) -> None:
        self.feature_config()  # the front end's cross-field limits, refused at load before any clip is read

    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(
            sample_rate=self.sample_rate,
            max_duration_s=self.max_duration_s,
            remove_silence=self.remove_silence,
            silence_top_db=self.silence_top_db,
            min_length_s=self.min_length_s,
            n_fft=self.n_fft,
            win_length=self.win_length,
            hop_length=self.hop_length,
            n_mels=self.n_mels,
            fmin=self.fmin,
            fmax=self.fmax,
            log_offset=self.log_offset,
            patch_frames=self.patch_frames,
            patch_step=self.patch_step,
        )


def run(
    params: PatchParams,
    manifest_path: Path,
    raw_dir: Path,
    patches_dir: Path,
    metrics_path: Path | None,
    class_names: list[str] | None = None,
) -> dict:
    """class_names fixes the model output order; default: the manifest's labels, sorted (the reference's rule)."""
    manifest = read_table(manifest_path, ("clip_id", "path", "label", "duration_s"), "validated manifest")
    classes = sorted(class_names or set(manifest["label"]))
    check_patch_fits(params)
    check_file_outputs(
        {"--metrics": metrics_path},
        {"manifest": manifest_path, "raw audio folder": raw_dir, "patch store": patches_dir},
    )
    clips = manifest.to_dict("records")
    if not clips:
        raise PatchStoreError(f"{manifest_path}: no clips; the patch store would be empty, nothing written")
    started = time.perf_counter()
    patches = patch_clips([raw_dir / clip["path"] for clip in clips], params.feature_config(), params.jobs)
    # The parameters that make the store, hashed into its manifest (jobs only changes the speed).
    identity = {**dataclasses.asdict(params), "class_names": classes}
    identity.pop("jobs")
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
    if metrics_path:
        write_record(metrics_path, "patch", metrics, inputs={"manifest": manifest_path})
    return metrics


def check_patch_fits(params: PatchParams) -> None:
    """A patch longer than the longest audio a clip can have (max_duration_s) gives no patch at all."""
    longest_s = max(params.max_duration_s, params.min_length_s)  # short clips are tiled up to min_length_s
    samples = int(round(longest_s * params.sample_rate))
    frames = 0 if samples < params.n_fft else 1 + (samples - params.n_fft) // params.hop_length
    if params.patch_frames > frames:
        raise PatchStoreError(
            f"patch.patch_frames: {params.patch_frames} frames is longer than the {frames} frames of the "
            f"longest clip ({longest_s} s at hop_length {params.hop_length}); "
            "no clip would give a patch"
        )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("patch", help="compute the reference log-mel 64x96 patches")
    add_params_option(parser)
    parser.add_argument("--manifest", type=Path, default=Path("artifacts/validated.csv"))
    parser.add_argument("--raw-dir", type=Path, default=Path("data/raw"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/patches"))
    parser.add_argument("--metrics", type=Path, default=Path("reports/patch.json"))
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    from aed.params import read_params

    params = load_section(args.params, "patch", PatchParams)
    classes = read_params(args.params).get("validate", {}).get("classes")
    metrics = run(params, args.manifest, args.raw_dir, args.out, args.metrics, classes)
    print(f"patch: { {k: metrics[k] for k in ('n_clips', 'n_patches', 'seconds', 'patches_per_second')} }")
    return 0
