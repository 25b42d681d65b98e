"""Benchmark: `aed train` with the splits trained one after another in this process (train.jobs 1, TensorFlow on
every core) against two worker processes at once (train.jobs 2, cores / 2 threads each), side by side.

    .venv/bin/python bench/split_jobs.py --patches artifacts/patches [--model yamnet_1024] [--folds 1 2]

The params are params.yaml's train section (with the model's overrides), restricted to the given folds and without
the final model. Prints the wall time of each run, the ratio and each split's validation accuracy in both runs.
Needs AED_MODELS_MIRROR (and, for yamnet_256 with its teacher, models/yamnet_1024/float). No asserts: figures only.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    import components.train as train
    from aed.models.config import ModelsParams
    from aed.params import load_section
    from aed.training import TrainParams

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patches", type=Path, default=Path("artifacts/patches"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--model", default="yamnet_1024")
    parser.add_argument("--folds", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    base = load_section(args.params, "train", TrainParams)
    base = dataclasses.replace(base, folds=args.folds, final_model=False)
    models = load_section(args.params, "models", ModelsParams)
    seconds, records = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for jobs in (1, 2):
            params = dataclasses.replace(base, jobs=jobs)
            out = Path(tmp) / f"jobs-{jobs}"
            started = time.perf_counter()
            records[jobs] = train.run(
                params, args.model, args.patches, out / "models", out / "reports", models
            )
            seconds[jobs] = time.perf_counter() - started
    print(f"{args.model}, folds {args.folds}, {len(os.sched_getaffinity(0))} cores available")
    print(f"{'train.jobs':<11} {'wall (s)':>9}  validation accuracy per split")
    for jobs in (1, 2):
        accuracy = {name: round(row["val_accuracy"], 4) for name, row in records[jobs]["splits"].items()}
        print(f"{jobs:<11} {seconds[jobs]:>9.1f}  {accuracy}")
    print(f"speed-up of train.jobs 2 over 1: {seconds[1] / seconds[2]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
