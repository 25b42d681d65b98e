"""Patching speed on the whole ESC-10 mirror: our patcher vs the straightforward librosa recipe, same run.

Usage: AED_DATA_MIRROR=../shared/data/esc10 python bench/patching.py [--jobs N]
Prints clips, patches, seconds, patches/s and real-time factor for both, and the speed ratio.
Goal: >= 5x the librosa reference on 2 cores, and the whole ESC-10 in under 15 s.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from aed.audio import probe
from aed.features_librosa import librosa_clip_patches
from aed.patching import patch_clips


def measure(name: str, produce, audio_seconds: float) -> tuple[float, list[np.ndarray]]:
    started = time.perf_counter()
    outputs = list(produce())
    seconds = time.perf_counter() - started
    patches = sum(len(p) for p in outputs)
    print(
        f"{name:<28} {len(outputs):>5} clips {patches:>6} patches {seconds:>8.2f} s "
        f"{patches / seconds:>9.1f} patches/s  RTF {audio_seconds / seconds:>8.1f}x"
    )
    return seconds, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mirror", type=Path, default=Path(os.environ.get("AED_DATA_MIRROR", "../shared/data/esc10"))
    )
    parser.add_argument(
        "--jobs", type=int, default=0, help="worker processes for our patcher (0: every core)"
    )
    args = parser.parse_args()
    clips = sorted((args.mirror / "audio").glob("*.flac"))
    if not clips:
        raise SystemExit(f"{args.mirror}/audio: no FLAC clips (set AED_DATA_MIRROR)")
    audio_seconds = sum(min(probe(c).duration_s, 10.0) for c in clips)
    print(f"ESC-10 mirror: {len(clips)} clips, {audio_seconds:.0f} s of audio, {os.cpu_count()} cores\n")

    librosa_clip_patches(clips[0])  # numba compiles librosa's kernels here, not inside the timed run
    reference_s, reference = measure(
        "librosa (reference, 1 core)", lambda: map(librosa_clip_patches, clips), audio_seconds
    )
    serial_s, _ = measure("aed patcher, 1 process", lambda: patch_clips(clips, jobs=1), audio_seconds)
    ours_s, ours = measure(
        f"aed patcher, jobs={args.jobs or os.cpu_count()}",
        lambda: patch_clips(clips, jobs=args.jobs),
        audio_seconds,
    )

    worst = max(float(np.abs(a - b).max()) for a, b in zip(ours, reference, strict=True))
    print(f"\nmax |ours - librosa| over all log-mel values: {worst:.2e} (parity bound 1e-3)")
    print(
        f"speed-up, same work: {reference_s / serial_s:.1f}x single process, {reference_s / ours_s:.1f}x parallel "
        f"(goal >= 5x); whole ESC-10 in {ours_s:.1f} s (goal < 15 s)"
    )


if __name__ == "__main__":
    main()
