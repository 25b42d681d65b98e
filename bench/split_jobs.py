"""Benchmark: `aed train` with its splits trained one after another in one process (train.jobs 1) against two
worker processes at once (train.jobs 2), on a small and a large dataset, to choose train.jobs' automatic value.

    .venv/bin/python bench/split_jobs.py [--patches artifacts/patches] [--model yamnet_256] [--repeats 3]
        [--cases small large] [--large-epochs 10] [--large-fine-tune-epochs 5] [--large-folds 1 2] [--first 1]
        [--warmup 1] [--json F]

Datasets, both cut from the ESC-10 patch store (`--patches`, made by `aed patch`):
    small  3 classes x 12 clips (crying_baby, dog, rooster: the issue's own dataset), the whole params.yaml recipe
    large  every clip (ESC-10: 400), fewer epochs and folds to keep it short (the options above)
Each run is a real `aed train` (a fresh process, as `dvc repro` runs it: TensorFlow's import and the workers'
start-up are part of the cost) on params.yaml's train section with only train.jobs and the case's keys changed,
models.names set to the model alone (no teacher). Runs are interleaved after a warm-up (bench/harness.py: 1, 2,
1, 2, ...; --first 2 starts with jobs 2) so that a change in the machine's load falls on both. Prints every wall
time, min / median / max, the ratio of medians, the load before and after (valid for the README or not) and the
training patches of the largest split (the measure the automatic choice weighs). Needs AED_MODELS_MIRROR. No asserts: figures only. Use a quiet machine if you can: on a
loaded one parallel workers find no free core (the figures in aed/training/jobs.py say which was which).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from harness import Case, add_arguments, compare, options, run_script

SMALL_CLASSES = ("crying_baby", "dog", "rooster")
SMALL_CLIPS_PER_CLASS = 12


def small_store(source: Path, target: Path) -> Path:
    """3 classes x 12 clips of `source`, spread over its folds, as a patch store of their own."""
    from aed.patchstore import load_patch_store, write_patch_store

    store = load_patch_store(source)
    index = store.index[store.index["label"].isin(SMALL_CLASSES)]
    clips = []
    for label in SMALL_CLASSES:
        ids = index[index["label"] == label].sort_values(["fold", "clip_id"])["clip_id"].unique()
        spread = ids[:: max(1, len(ids) // SMALL_CLIPS_PER_CLASS)][:SMALL_CLIPS_PER_CLASS]  # over the folds
        for clip_id in spread:
            rows = index[index["clip_id"] == clip_id]
            meta = {"clip_id": clip_id, "label": label, "fold": int(rows["fold"].iloc[0]), "split": "train"}
            clips.append((meta, store.patches(rows)))
    write_patch_store(target, clips, list(SMALL_CLASSES))
    return target


def case_params(base: dict, model: str, jobs: int, train: dict) -> dict:
    """params.yaml with the case's train keys, also over the model's own overrides (else its override of
    fine_tune_epochs would beat the shortened top-level value), and the model alone in models.names."""
    params = {**base, "models": {**(base.get("models") or {}), "names": [model]}}
    overrides = dict(base["train"].get("overrides") or {})
    own = overrides.get(model) or {}
    overrides[model] = {**own, **{key: value for key, value in train.items() if key in own}}
    params["train"] = {**base["train"], **train, "jobs": jobs, "overrides": overrides}
    return params


def timed_train(params: dict, model: str, patches: Path, scratch: Path) -> float:
    """The wall time of one `aed train` process; its output goes to a log beside it (kept on failure)."""
    path = scratch / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    log = scratch / "train.log"
    command = [
        sys.executable, "-m", "pipelines.cli", "train", "--params", str(path), "--model", model,
        "--patches", str(patches), "--out", str(scratch / "model"), "--reports", str(scratch / "reports"),
    ]  # fmt: skip
    started = time.perf_counter()
    with open(log, "w") as output:
        done = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"aed train failed ({done.returncode}); see {log}")
    return seconds


def patches_per_split(patches: Path, train: dict) -> int:
    """Training patches of the case's largest split: the measure train.jobs 0 weighs (choose_workers)."""
    from aed.params import from_dict
    from aed.patchstore import load_patch_store
    from aed.training import TrainParams
    from aed.training.jobs import largest_training_part, plan_splits

    params = from_dict(TrainParams, {k: v for k, v in train.items() if k != "overrides"}, "train")
    store = load_patch_store(patches)
    return largest_training_part(store, plan_splits(store, params))


def run_case(
    name: str, patches: Path, params_by_jobs: dict[int, dict], model: str, run_options: dict, first: int = 1
) -> dict:
    """jobs 1 and jobs 2 interleaved (first `first`), each run a fresh `aed train` in a scratch folder of its own."""
    with tempfile.TemporaryDirectory() as tmp:
        numbers = itertools.count()

        def train(jobs: int) -> float:
            scratch = Path(tmp) / f"{jobs}-{next(numbers)}"
            scratch.mkdir()
            return timed_train(params_by_jobs[jobs], model, patches, scratch)

        order = (first, 3 - first)
        cases = [Case(f"{name} jobs {jobs}", lambda jobs=jobs: train(jobs), processes=jobs) for jobs in order]
        result = compare(cases, progress=lambda line: print(line, flush=True), **run_options)
    one, two = result[f"{name} jobs 1"].median, result[f"{name} jobs 2"].median
    print(
        f"{name}: {patches_per_split(patches, params_by_jobs[1]['train'])} training patches per split; "
        f"median jobs 1 {one:.1f} s, "
        f"jobs 2 {two:.1f} s; jobs 2 / jobs 1 = {two / one:.2f} (speed-up {one / two:.2f}x)",
        flush=True,
    )
    print(result.report(), flush=True)
    return result.to_dict()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patches", type=Path, default=Path("artifacts/patches"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--model", default="yamnet_256")
    parser.add_argument("--cases", nargs="+", choices=("small", "large"), default=["small", "large"])
    parser.add_argument("--large-epochs", type=int, default=10)
    parser.add_argument("--large-fine-tune-epochs", type=int, default=5)
    parser.add_argument("--large-folds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--first", type=int, choices=(1, 2), default=1, help="jobs value of the first run")
    add_arguments(parser)
    args = parser.parse_args()
    run_options = options(args)

    base = yaml.safe_load(args.params.read_text())
    print(
        f"{args.model}, {len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "small" in args.cases:
            small = small_store(args.patches, Path(tmp) / "small")
            by_jobs = {jobs: case_params(base, args.model, jobs, {}) for jobs in (1, 2)}
            figures["small"] = run_case("small", small, by_jobs, args.model, run_options, args.first)
        if "large" in args.cases:
            short = {
                "epochs": args.large_epochs,
                "fine_tune_epochs": args.large_fine_tune_epochs,
                "folds": args.large_folds,
            }
            by_jobs = {jobs: case_params(base, args.model, jobs, short) for jobs in (1, 2)}
            figures["large"] = run_case("large", args.patches, by_jobs, args.model, run_options, args.first)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_script(main)
