"""Benchmark: the head phase with one batch per call into TensorFlow against HEAD_STEPS_PER_CALL batches per call.

    .venv/bin/python bench/head_steps.py --patches artifacts/patches [--model yamnet_256] [--fold 1] [--epochs 50]
        [--steps 1 8 32] [--repeats 5] [--warmup 1] [--json F]

The head is one dense layer on cached embeddings, so a step costs less than the call that runs it. The cache of
one split (the params.yaml recipe: augmented copies, no teacher) is built once; then the head trains from the same
start with each value of --steps, interleaved (bench/harness.py). One TensorFlow thread, as in a training worker
on 2 cores. The weights of every case are compared with the first case's: the setting must not change them.
Needs AED_MODELS_MIRROR. No asserts: figures only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from harness import Case, add_arguments, compare, options, run_script

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    import keras
    import numpy as np
    import tensorflow as tf

    from aed.params import load_section
    from aed.patchstore import load_patch_store
    from aed.splits import make_splits
    from aed.training import TrainParams
    from aed.training.fit import FitPlan, Selection, train_on_cache
    from aed.training.network import build_split_network
    from aed.training.trainer import HEAD_STEPS_PER_CALL, cache_features, load_split

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patches", type=Path, default=Path("artifacts/patches"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--model", default="yamnet_256")
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, HEAD_STEPS_PER_CALL])
    add_arguments(parser)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    store = load_patch_store(args.patches)
    params = load_section(args.params, "train", TrainParams).for_model(args.model)
    params = dataclasses.replace(params, epochs=args.epochs, teacher=None)
    (split,) = make_splits(
        store.index, store.class_names, "folds", [args.fold], params.validation_fraction, seed=params.seed
    )
    n_classes = len(store.class_names)
    rng = np.random.default_rng(params.seed)
    net = build_split_network(args.model, n_classes, params.fine_tune_blocks)
    cache = cache_features(net, load_split(store, split, rng), params, rng, None, n_classes)
    data = cache.fit_data(cache.embeddings, cache.val_embeddings)
    start = net.head.get_weights()
    print(f"{args.model} fold {args.fold}: {len(cache.labels)} training patches, {args.epochs} head epochs")

    def train(steps: int) -> list[np.ndarray]:
        net.head.set_weights(start)
        keras.utils.set_random_seed(params.seed)
        plan = FitPlan("head", args.epochs, params.learning_rate, steps_per_execution=steps)
        selection = train_on_cache(
            net.head, data, plan, params, np.random.default_rng(params.seed), Selection()
        )
        return selection.weights

    cases = [Case(f"{steps} per call", lambda steps=steps: train(steps)) for steps in args.steps]
    result = compare(cases, progress=lambda line: print(line, flush=True), **options(args))
    print(result.report())
    reference = result.outputs[cases[0].name]
    same = {
        case.name: all(
            np.array_equal(a, b) for a, b in zip(reference, result.outputs[case.name], strict=True)
        )
        for case in cases
    }
    print("weights identical to the first case's: " + ", ".join(f"{k}: {v}" for k, v in same.items()))
    if args.json:
        args.json.write_text(json.dumps({**result.to_dict(), "identical_weights": same}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_script(main)
