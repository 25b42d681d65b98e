"""Benchmark: frozen-backbone training time per fold, with the embedding cache and without (the reference's
end-to-end fit, which re-runs the frozen backbone on every patch in every epoch), side by side.

    .venv/bin/python bench/training.py --patches artifacts/patches [--epochs 50] [--fold 1] [--models yamnet_256 ...]
        [--repeats 5] [--warmup 1] [--json F]

Both paths train the same model (frozen backbone + new softmax head) with the same augmentation kind and epoch
selection, interleaved after a warm-up (bench/harness.py: min / median / max, the ratio of medians, the load and
whether the run is valid for the README). Needs AED_MODELS_MIRROR. No asserts: figures only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from harness import Case, add_arguments, compare, options, run_script

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def seconds_per_epoch(history: list[dict]) -> float:
    return sum(row["seconds"] for row in history) / max(1, len(history))


def main() -> int:
    from aed.patchstore import load_patch_store
    from aed.splits import make_splits
    from aed.training import TrainParams, train_split

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patches", type=Path, default=Path("artifacts/patches"))
    parser.add_argument("--models", nargs="+", default=["yamnet_256", "yamnet_1024"])
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=50, help="the reference trains 50 epochs")
    parser.add_argument("--copies", type=int, default=4, help="augmented copies in the cache")
    add_arguments(parser)
    args = parser.parse_args()
    run_options = options(args)

    store = load_patch_store(args.patches)
    (split,) = make_splits(store.index, store.class_names, "folds", [args.fold])
    # The reference recipe (frozen backbone, noise + volume augmentation), not the fine-tuning defaults.
    base = TrainParams(epochs=args.epochs, augment_copies=args.copies, final_model=False, fine_tune_blocks=0)
    print(
        f"fold {args.fold}: {len(split.train_clips)} train / {len(split.val_clips)} validation clips, "
        f"{args.epochs} epochs, os.cpu_count()={os.cpu_count()}"
    )
    print(
        f"medians of interleaved runs\n{'model':<12} {'cache (s)':>10} {'no cache (s)':>13} {'ratio':>7}  "
        f"{'s/epoch cache':>13} {'s/epoch no cache':>16}  val acc cache / no cache"
    )
    figures = {}
    for model_name in args.models:
        # the reference (no cache) first: the ratio of medians is its time over the cache's
        # TensorFlow runs its ops on every core: each case keeps them all busy (the harness then takes that load
        # out of the "after" figure instead of blaming other processes for it)
        cores = len(os.sched_getaffinity(0))
        cases = [
            Case(f"{model_name} {label}", lambda cached=cached, model_name=model_name: train_split(
                store, split, model_name, dataclasses.replace(base, embedding_cache=cached)), processes=cores)
            for label, cached in (("no cache", False), ("cache", True))
        ]  # fmt: skip
        timed = compare(cases, progress=lambda line: print(line, flush=True), **run_options)
        (no_cache, cache), results = timed.timings, timed.outputs
        per_epoch = {name: seconds_per_epoch(result.history) for name, result in results.items()}
        print(
            f"{model_name:<12} {cache.median:>10.1f} {no_cache.median:>13.1f} {timed.ratio(cache.name):>6.1f}x  "
            f"{per_epoch[cache.name]:>13.2f} {per_epoch[no_cache.name]:>16.2f}  "
            f"{results[cache.name].val_accuracy:.3f} / {results[no_cache.name].val_accuracy:.3f}"
        )
        print(timed.report())
        figures[model_name] = timed.to_dict()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_script(main)
