"""Benchmark: activation memory of each model, side by side in one run.

    python bench/memory.py [--yamnet-256 M.tflite] [--yamnet-1024 M.onnx|M.tflite] [--json OUT]

Columns, per model: the greedy plan (TFLM's GreedyMemoryPlanner, re-implemented), the improved plan, the arena
tflite-micro actually needs with the improved plan embedded as its offline plan and without any plan (both
measured: the smallest arena that allocates, plan head plus persistent and scratch needs), and ST's published
activation figure, each with its ratio to ST's. Without model paths both architectures are built with random
weights (values do not change a memory figure) as bench/estimator.py does.

What the TFLM columns prove: the arena sizes, measured with tflite-micro's reference kernels. The in-step proof of
`aed convert` (bit-exact outputs) is not repeated here; neither says anything about CMSIS-NN kernels. ONNX QDQ
models get the planner figures only (TFLM runs .tflite models).

No timing here: the figures are byte counts, the same on a loaded machine and a quiet one, so bench/harness.py's
interleaved timing does not apply; its one-line handling of a bad input (run_script) does.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KIB = 1024
# ST's published activation RAM (KiB): YAMNet-256 on the U5 MCU; YAMNet-1024 in the N6 MCU table
# (both unchanged between ST Edge AI Core 2.0.0 and 3.0.0 for YAMNet-256; 3.0.0 gives 144.0 for YAMNet-1024)
ST_ACTIVATIONS_KIB = {"yamnet_256": 109.57, "yamnet_1024": 108.59}


def figures(path: Path) -> dict[str, Any]:
    from aed.footprint import load_graph
    from aed.footprint.estimator import plan_activations
    from aed.footprint.tflm import embed_offline_plan, offline_offsets, smallest_arena

    graph = load_graph(path)
    plans = plan_activations(graph)
    result: dict[str, Any] = {"greedy": plans.greedy.head, "improved": plans.improved.head}
    if path.suffix.lower() != ".tflite":
        return {**result, "tflm_planned": None, "tflm_unplanned": None, "note": "ONNX QDQ: estimate only"}
    with tempfile.TemporaryDirectory() as scratch:
        planned = Path(scratch) / "planned.tflite"
        embed_offline_plan(path, planned, offline_offsets(graph, plans.improved))
        result["tflm_planned"] = smallest_arena(planned.read_bytes()).bytes
    result["tflm_unplanned"] = smallest_arena(path.read_bytes()).bytes
    return {**result, "note": "TFLM arenas measured with the reference kernels (not CMSIS-NN)"}


def table(name: str, path: Path, found: dict[str, Any]) -> list[str]:
    st = ST_ACTIVATIONS_KIB.get(name)
    lines = [f"\n{name}: {path.name}   ({found['note']})",
             f"  {'':<36} {'bytes':>10} {'KiB':>9} {'/ ST':>7} {'/ greedy':>9}"]  # fmt: skip
    labels = {
        "greedy": "greedy plan (TFLM planner)",
        "improved": "improved plan",
        "tflm_planned": "TFLM arena, improved plan embedded",
        "tflm_unplanned": "TFLM arena, no offline plan",
    }
    for key, label in labels.items():
        value = found[key]
        if value is None:
            lines.append(f"  {label:<36} {'n/a':>10}")
            continue
        to_st = f"{value / KIB / st:7.3f}" if st else f"{'n/a':>7}"
        lines.append(
            f"  {label:<36} {value:>10,} {value / KIB:>9.2f} {to_st} {value / found['greedy']:>9.3f}"
        )
    if st:
        lines.append(f"  {'ST published activations':<36} {round(st * KIB):>10,} {st:>9.2f} {1.0:7.3f}")
    if found["tflm_planned"] and found["tflm_unplanned"]:
        saving = 1 - found["tflm_planned"] / found["tflm_unplanned"]
        lines.append(f"  TFLM arena saved by the offline plan: {saving:.1%}")
    return lines


def main() -> None:
    from estimator import build  # bench/estimator.py: the same random-weight models

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--yamnet-256", type=Path)
    parser.add_argument("--yamnet-1024", type=Path)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    for given in (args.yamnet_256, args.yamnet_1024):
        if given is not None and not given.is_file():
            raise FileNotFoundError(f"{given}: model file not found")
    summary = {}
    with tempfile.TemporaryDirectory(prefix="aed_bench_memory_") as scratch:
        workdir = Path(scratch)
        models = {"yamnet_256": args.yamnet_256 or build("yamnet_256", workdir),
                  "yamnet_1024": args.yamnet_1024 or build("yamnet_1024", workdir)}  # fmt: skip
        for name, path in models.items():
            summary[name] = {
                "model": str(path),
                **figures(path),
                "st_activations_kib": ST_ACTIVATIONS_KIB[name],
            }
            print("\n".join(table(name, path, summary[name])))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    from harness import run_script  # bench/harness.py

    run_script(main)
