"""Benchmark: frozen-backbone training time per fold, with the embedding cache and without (the reference's
end-to-end fit, which re-runs the frozen backbone on every patch in every epoch), side by side.

    .venv/bin/python bench/training.py --patches artifacts/patches [--epochs 50] [--fold 1] [--models yamnet_256 ...]

Both paths train the same model (frozen backbone + new softmax head) with the same augmentation kind and epoch
selection. Prints seconds per fold and the ratio. Needs AED_MODELS_MIRROR. No asserts: figures only.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
    args = parser.parse_args()

    store = load_patch_store(args.patches)
    (split,) = make_splits(store.index, store.class_names, "folds", [args.fold])
    # The reference recipe (frozen backbone, noise + volume augmentation), not the fine-tuning defaults.
    base = TrainParams(epochs=args.epochs, augment_copies=args.copies, final_model=False, fine_tune_blocks=0)
    print(
        f"fold {args.fold}: {len(split.train_clips)} train / {len(split.val_clips)} validation clips, "
        f"{args.epochs} epochs, os.cpu_count()={os.cpu_count()}"
    )
    print(
        f"{'model':<12} {'cache (s)':>10} {'no cache (s)':>13} {'ratio':>7}  {'s/epoch cache':>13} "
        f"{'s/epoch no cache':>16}  val acc cache / no cache"
    )
    for model_name in args.models:
        timings, accuracy, per_epoch = {}, {}, {}
        for cached in (True, False):
            params = dataclasses.replace(base, embedding_cache=cached)
            started = time.perf_counter()
            result = train_split(store, split, model_name, params)
            timings[cached] = time.perf_counter() - started
            accuracy[cached] = result.val_accuracy
            per_epoch[cached] = sum(row["seconds"] for row in result.history) / max(1, len(result.history))
        ratio = timings[False] / timings[True]
        print(
            f"{model_name:<12} {timings[True]:>10.1f} {timings[False]:>13.1f} {ratio:>6.1f}x  "
            f"{per_epoch[True]:>13.2f} {per_epoch[False]:>16.2f}  {accuracy[True]:.3f} / {accuracy[False]:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
