"""`aed detect` on one hour of 16 kHz audio beside a straightforward librosa + interpreter loop, same run.

Usage: python bench/detect.py [--model PATH] [--minutes 60] [--hop-s 0.5] [--repeats 5] [--json F]
Each side runs in its own child process, interleaved through bench/harness.py (warm-up, repeats, medians, the
load average and whether the run is valid for the README); peak RSS is os.wait4's ru_maxrss of the child. Targets (issue 18): detect with YAMNet-256 int8 in <= 36 s for the hour on 2 cores
(>= 100x real time) and peak RSS <= 500 MB.

The recording is built (seeded) from the ESC-10 mirror's clips in random order with quiet noise between them,
written as 16-bit PCM WAV chunk by chunk; without the mirror it is noise and tones.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
from harness import Case, Timed, add_arguments, compare, options, run_script

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "models/yamnet_256/int8/final/model_int8.tflite"
TARGET_S_PER_HOUR, TARGET_RSS_MB = 36.0, 500.0

# The way one would write it without aed.detection: decode everything, one log-mel, one interpreter call per patch.
BASELINE = r"""
import sys, numpy as np, librosa
from ai_edge_litert.interpreter import Interpreter
from aed.features_librosa import librosa_log_mel
path, model, hop = sys.argv[1], sys.argv[2], float(sys.argv[3])
signal, _ = librosa.load(path, sr=16000, mono=True)
log_mel = librosa_log_mel(signal)
step = round(hop / 0.01)
count = 1 + (log_mel.shape[1] - 96) // step
interpreter = Interpreter(model_path=model, num_threads=2)
interpreter.allocate_tensors()
detail_in, detail_out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
scale, zero = detail_in["quantization"]
scores = []
for i in range(count):
    patch = log_mel[:, i * step : i * step + 96][None, :, :, None]
    interpreter.set_tensor(detail_in["index"], np.clip(np.round(patch / scale + zero), -128, 127).astype(np.int8))
    interpreter.invoke()
    scores.append(interpreter.get_tensor(detail_out["index"])[0].copy())
print(f"windows {len(scores)}")
"""


def build_recording(path: Path, minutes: float, mirror: Path, seed: int = 0) -> float:
    """Clips (or tones) with 1-4 s of quiet noise between them, written chunk by chunk; returns its seconds."""
    from aed.audio import load_audio

    rng = np.random.default_rng(seed)
    clips = sorted((mirror / "audio").glob("*.flac")) if mirror.is_dir() else []
    total = int(minutes * 60 * 16000)
    written = 0
    with soundfile.SoundFile(str(path), "w", 16000, 1, subtype="PCM_16") as handle:
        while written < total:
            gap = (0.003 * rng.standard_normal(int(rng.uniform(1, 4) * 16000))).astype(np.float32)
            if clips:
                sound = load_audio(clips[rng.integers(len(clips))], 16000)
            else:
                t = np.arange(5 * 16000) / 16000
                sound = (0.3 * np.sin(2 * np.pi * rng.uniform(200, 4000) * t)).astype(np.float32)
            block = np.concatenate([gap, sound])[: total - written]
            handle.write(block)
            written += len(block)
    return written / 16000


# The README's example: held-out clips of ESC-10 fold 5 (the fold-5 model never trained on them), in this order,
# with 2 s of quiet room noise (-50 dBFS) between them.
EXAMPLE_CLIPS = ("crying_baby", "rain", "dog", "clock_tick", "rooster", "crying_baby")


def build_example(path: Path, mirror: Path, seed: int = 0) -> list[tuple[str, float, float]]:
    """Writes the example recording; returns (class, start s, end s) of each clip placed."""
    import csv

    from aed.audio import load_audio

    with open(mirror / "meta.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["fold"] == "5" and r["esc10"] == "True"]
    rng = np.random.default_rng(seed)
    parts, placed, now = [], [], 0.0
    for label in EXAMPLE_CLIPS:
        choices = sorted(r["filename"] for r in rows if r["category"] == label)
        clip = load_audio(mirror / "audio" / choices[rng.integers(len(choices))], 16000)
        gap = (0.003 * rng.standard_normal(2 * 16000)).astype(np.float32)
        parts += [gap, clip]
        placed.append((label, now + 2.0, now + 2.0 + len(clip) / 16000))
        now += 2.0 + len(clip) / 16000
    parts.append((0.003 * rng.standard_normal(2 * 16000)).astype(np.float32))
    soundfile.write(str(path), np.concatenate(parts), 16000, subtype="PCM_16")
    return placed


def run_child(name: str, command: list[str], audio_s: float) -> Timed:
    """Popen + wait4 on the pid, so the rusage is this child's alone (RUSAGE_CHILDREN would mix them). The time
    is the child's whole wall time (its start-up included: a user pays it too)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(
                f"{name}: exit {os.waitstatus_to_exitcode(status)}\n{err.read().decode()[-2000:]}"
            )
        rss_mb, cpu_s = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
        return Timed(seconds, {"rss_mb": rss_mb, "cpu_s": cpu_s, "rtf": audio_s / seconds})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help="int8 model (default: YAMNet-256's)"
    )
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--hop-s", type=float, default=0.5)
    parser.add_argument(
        "--mirror",
        type=Path,
        default=Path(os.environ.get("AED_DATA_MIRROR", REPO.parent / "shared/data/esc10")),
    )
    parser.add_argument("--skip-baseline", action="store_true", help="only aed detect")
    parser.add_argument("--example", type=Path, default=None,
                        help="only write the README's example recording (held-out ESC-10 fold-5 clips) here")  # fmt: skip
    add_arguments(parser)
    args = parser.parse_args()
    if args.example is not None:
        for label, start, end in build_example(args.example, args.mirror):
            print(f"{start:7.2f} {end:7.2f}  {label}")
        return
    if not args.model.is_file():
        raise SystemExit(f"{args.model}: model not found (run make demo, or pass --model)")
    with tempfile.TemporaryDirectory(prefix="bench-detect-") as folder:
        recording = Path(folder) / "hour.wav"
        audio_s = build_recording(recording, args.minutes, args.mirror)
        print(f"recording: {audio_s / 60:.1f} min of 16 kHz 16-bit audio ({recording.stat().st_size / 1e6:.0f} MB), "
              f"model {args.model}, hop {args.hop_s} s, {os.cpu_count()} cores")  # fmt: skip
        runs = itertools.count()

        def detect() -> Timed:  # a fresh output folder each run, as a user's first run has
            command = [sys.executable, "-c", "import sys; from pipelines.cli import main; sys.exit(main())",
                       "detect", "--model", str(args.model), str(recording), "--out", f"{folder}/out-{next(runs)}",
                       "--hop-s", str(args.hop_s)]  # fmt: skip
            return run_child("aed detect", command, audio_s)

        baseline = [sys.executable, "-c", BASELINE, str(recording), str(args.model), str(args.hop_s)]
        cases = [] if args.skip_baseline else [
            Case("librosa + interpreter loop", lambda: run_child("loop", baseline, audio_s), processes=2)
        ]  # fmt: skip
        cases.append(Case("aed detect", detect, processes=2))
        result = compare(cases, **options(args), progress=print)
    print(result.report())
    # peak RSS and CPU seconds of each side's last run (they do not depend on what else the machine runs)
    for name, figures in result.outputs.items():
        print(f"{name:<28} peak RSS {figures['rss_mb']:6.0f} MB, {figures['cpu_s']:6.1f} CPU s")
    ours = result.outputs["aed detect"]
    per_hour = result["aed detect"].median * 3600 / audio_s
    print(f"aed detect: {audio_s / result['aed detect'].median:.0f}x real time (median)")
    print(f"targets: <= {TARGET_S_PER_HOUR:.0f} s per hour: {per_hour:.1f} s "
          f"({'met' if per_hour <= TARGET_S_PER_HOUR else 'NOT met'}); peak RSS <= {TARGET_RSS_MB:.0f} MB: "
          f"{ours['rss_mb']:.0f} MB ({'met' if ours['rss_mb'] <= TARGET_RSS_MB else 'NOT met'})")  # fmt: skip
    result.write_json(args.json)


if __name__ == "__main__":
    run_script(main)
