"""Patching speed on the whole ESC-10 mirror: the librosa recipe, the floor (decoding alone) and our patch step,
interleaved (bench/harness.py), then where our time goes.

Usage: AED_DATA_MIRROR=../shared/data/esc10 python bench/patching.py [--jobs N] [--repeats 5] [--json out.json]

Cases, each over every clip of the mirror (400 FLAC clips of 5 s for ESC-10):
    librosa recipe, 1 core       aed.features_librosa, the straightforward recipe (the reference of the ratios),
                                 timed inside a process of its own that keeps glibc's default memory settings
    floor: decode, 1 core        aed.audio.read_audio alone: no patcher can be faster on one core
    aed patcher, 1 process       aed.patching.patch_clips(jobs=1)
    aed patch step, jobs=N       patch_clips(jobs=N) and write_patch_store into a scratch folder (the whole step
                                 `aed patch` times, worker pool start-up included)
Then the breakdown on one core (median of --repeats passes): decode, resample (+ mono), silence removal (+ 1 s
minimum), STFT (|rfft| over the filterbank's bins), mel (product + log), cutting patches, writing shards.
Goal (issue 20): the patch step at most 0.5 s wall on 2 cores, 4x the librosa recipe on one core, parity 1e-3.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from harness import Case, Timed, add_arguments, compare, options, run_script
from threadpoolctl import threadpool_limits

from aed.audio import probe, read_audio, to_mono_at_rate
from aed.features import FeatureConfig, mel_log, preprocess_waveform, stft_magnitude, to_patches
from aed.features_librosa import librosa_clip_patches
from aed.patching import patch_clips

# Worker processes import this script again (multiprocessing's main-module rule): heavy imports (pandas, through
# aed.patchstore) stay inside the functions, so that the timed pool start-up is the patch step's own.

STAGES = ("decode", "resample", "silence removal", "STFT", "mel", "cut patches", "write shards")
GOAL_WALL_S = 0.5
GOAL_RATIO = 4.0


def clip_meta(path: Path) -> dict:
    """Store metadata from an ESC-10 file name (fold-clip-take-target.flac); the label is the target number."""
    fold, _, _, target = path.stem.split("-")
    return {"clip_id": path.stem, "label": target, "fold": int(fold), "split": "train"}


def librosa_one_core(clips: list[Path]) -> Timed:
    """The reference recipe on one core (its mel product would otherwise use every BLAS thread), timed where it
    runs: in a process of its own, so that our patcher's memory setting (aed.patching.keep_freed_memory, which
    holds for the whole process) does not speed up the reference too."""
    with threadpool_limits(limits=1, user_api="blas"):
        started = time.perf_counter()
        patches = [librosa_clip_patches(clip) for clip in clips]
        return Timed(time.perf_counter() - started, patches)


def whole_step(clips: list[Path], jobs: int, out: Path) -> int:
    """patch_clips + write_patch_store, as components/patch does it; returns the patch count."""
    from aed.patchstore import write_patch_store

    metas = [clip_meta(path) for path in clips]
    classes = sorted({meta["label"] for meta in metas})
    index = write_patch_store(out, zip(metas, patch_clips(clips, jobs=jobs), strict=True), classes)
    return len(index)


def breakdown_pass(clips: list[Path], config: FeatureConfig, out: Path) -> dict[str, float]:
    """Seconds per stage over every clip, one core, timed stage by stage with the pipeline's own functions."""
    from aed.patchstore import write_patch_store

    spent = dict.fromkeys(STAGES, 0.0)
    clock = time.perf_counter

    def timed(stage: str, step: Callable, *args):
        tick = clock()
        value = step(*args)
        spent[stage] += clock() - tick
        return value

    results = []
    for path in clips:
        samples, info = timed("decode", read_audio, path, config.max_duration_s)
        signal = timed("resample", to_mono_at_rate, samples, info, config.sample_rate, path)
        signal = timed("silence removal", preprocess_waveform, signal, config)
        magnitude = timed("STFT", stft_magnitude, signal, config)
        spectrogram = timed("mel", mel_log, magnitude, config)
        results.append(timed("cut patches", to_patches, spectrogram, config))
    metas = [clip_meta(path) for path in clips]
    classes = sorted({meta["label"] for meta in metas})
    timed("write shards", write_patch_store, out, zip(metas, results, strict=True), classes)
    return spent


def print_breakdown(passes: list[dict[str, float]], floor_s: float) -> dict[str, dict[str, float]]:
    medians = {stage: statistics.median(p[stage] for p in passes) for stage in STAGES}
    total = sum(medians.values())
    print(f"\nwhere the time goes, one core, median of {len(passes)} passes (min / median / max):")
    for stage in STAGES:
        values = [p[stage] for p in passes]
        print(
            f"  {stage:<16} {min(values):>7.3f} {medians[stage]:>7.3f} {max(values):>7.3f} s  "
            f"{medians[stage] / total:>5.1%}"
        )
    print(f"  {'total':<16} {'':>7} {total:>7.3f}   s  (floor, decode alone: {floor_s:.3f} s)")
    return {
        stage: {"median_s": round(medians[stage], 6), "share": round(medians[stage] / total, 4)}
        for stage in STAGES
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mirror", type=Path, default=Path(os.environ.get("AED_DATA_MIRROR", "../shared/data/esc10"))
    )
    parser.add_argument(
        "--jobs", type=int, default=0, help="worker processes for our patch step (0: every core)"
    )
    add_arguments(parser)
    args = parser.parse_args()
    run_options = options(args)
    clips = sorted((args.mirror / "audio").glob("*.flac"))
    if not clips:
        print(f"{args.mirror}/audio: no FLAC clips (set AED_DATA_MIRROR)", file=sys.stderr)
        return 2
    jobs = args.jobs or len(os.sched_getaffinity(0))
    audio_seconds = sum(min(probe(c).duration_s, 10.0) for c in clips)
    print(f"ESC-10 mirror: {len(clips)} clips, {audio_seconds:.0f} s of audio, {os.cpu_count()} cores\n")

    reference = ProcessPoolExecutor(1, get_context("forkserver"))  # a stock process for the reference
    with reference, tempfile.TemporaryDirectory(prefix="aed_bench_patch_") as scratch:
        reference.submit(librosa_clip_patches, clips[0]).result()  # numba compiles librosa's kernels there
        cases = [
            Case("librosa recipe, 1 core", lambda: reference.submit(librosa_one_core, clips).result()),
            Case("floor: decode, 1 core", lambda: [read_audio(c, 10.0) for c in clips]),
            Case("aed patcher, 1 process", lambda: list(patch_clips(clips, jobs=1))),
            Case(
                f"aed patch step, jobs={jobs}",
                lambda: whole_step(clips, jobs, Path(scratch) / "step"),
                processes=jobs,
            ),
        ]
        result = compare(cases, progress=lambda line: print(line, flush=True), **run_options)
        print()
        print(result.report())
        passes = [
            breakdown_pass(clips, FeatureConfig(), Path(scratch) / "breakdown") for _ in range(args.repeats)
        ]

    ours, reference = result.outputs["aed patcher, 1 process"], result.outputs["librosa recipe, 1 core"]
    worst = max(float(np.abs(a - b).max()) for a, b in zip(ours, reference, strict=True))
    floor_s = result["floor: decode, 1 core"].median
    step = result[f"aed patch step, jobs={jobs}"]
    breakdown = print_breakdown(passes, floor_s)
    print(f"\nmax |ours - librosa| over all log-mel values: {worst:.2e} (parity bound 1e-3)")
    print(
        f"patch step, jobs={jobs}: median {step.median:.3f} s wall, {result.ratio(step.name):.2f}x the librosa "
        f"recipe on one core (goal <= {GOAL_WALL_S} s, >= {GOAL_RATIO:g}x); "
        f"floor on {jobs} cores at best {floor_s / jobs:.3f} s; {audio_seconds / step.median:.0f}x real time"
    )
    one_core = sum(stage["median_s"] for stage in breakdown.values())
    target = min(GOAL_WALL_S, result.timings[0].median / GOAL_RATIO)
    print(
        f"from the breakdown: {one_core:.3f} s of one-core work / {jobs} cores = {one_core / jobs:.3f} s at best, "
        f"before the worker pool's start-up; the goal needs <= {target:.3f} s "
        f"({'within reach' if one_core / jobs <= target else 'out of reach with this work'})"
    )
    result.write_json(args.json, {"breakdown_one_core": breakdown, "max_abs_diff_vs_librosa": worst})
    return 0


if __name__ == "__main__":
    run_script(main)
