"""Benchmark: the built-in estimator on YAMNet-256 / YAMNet-1024 int8, next to ST's published figures.

    python bench/estimator.py [--yamnet-256 M.tflite] [--yamnet-1024 M.onnx|M.tflite] [--repeats 5] [--json F]

Without model paths it builds both architectures with random weights (values do not change any figure here) and
quantizes them with the project's own aed.quantize. Prints every figure with ST's value and the ratio; all of
ours are `source: estimator`. The estimator's own run time (limit 2 s per call) is timed with bench/harness.py: the
U5 and N6 estimates of a model interleaved after a warm-up, min / median / max, the load and the verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from harness import Case, add_arguments, compare, options, run_script

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KIB = 1024
# ST model zoo's published figures for its quantized YAMNet models (STM32Cube.AI 10.0.0 / ST Edge AI 2.0.0)
ST = {
    "yamnet_256": {"weights_kib": 135.91, "macs": 23.93e6, "u5_activations_kib": 109.57, "npu_ram_kib": 144.0,
                   "u5_ms": 281.95, "n6_ms": 1.07},
    "yamnet_1024": {"weights_kib": 3162.66, "macs": 68.65e6, "u5_activations_kib": 108.59, "npu_ram_kib": 144.0,
                    "u5_ms": None, "n6_ms": 9.88},
}  # fmt: skip


def build(name: str, out: Path) -> Path:
    from aed.models import build_yamnet_256, build_yamnet_1024
    from aed.quantize import to_int8_tflite, to_qdq_onnx

    model = (
        build_yamnet_256(10, pretrained=False)
        if name == "yamnet_256"
        else build_yamnet_1024(10, pretrained=False)
    )
    rng = np.random.default_rng(1)
    for layer in model.layers:  # non-zero biases, so the converter keeps one bias buffer per layer
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in weights])
    calibration = rng.normal(-4.0, 2.0, size=(4, 64, 96, 1)).astype(np.float32)
    if name == "yamnet_256":
        path = out / "yamnet_256_int8.tflite"
        to_int8_tflite(model, calibration, path)
    else:
        path = out / "yamnet_1024_qdq.onnx"
        to_qdq_onnx(model, calibration, path)
    return path


def row(label: str, ours: float, st: float | None, unit: str) -> str:
    ratio = f"{ours / st:6.3f}" if st else "   n/a"
    st_text = f"{st:>12,.2f}" if st is not None else f"{'-':>12}"
    return f"  {label:<34} {ours:>12,.2f} {st_text}  {ratio}  {unit}"


def main() -> None:
    from aed.footprint import estimate

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--yamnet-256", type=Path)
    parser.add_argument("--yamnet-1024", type=Path)
    add_arguments(parser)
    args = parser.parse_args()
    run_options = options(args)
    workdir = Path(tempfile.mkdtemp(prefix="aed_bench_"))
    models = {"yamnet_256": args.yamnet_256 or build("yamnet_256", workdir),
              "yamnet_1024": args.yamnet_1024 or build("yamnet_1024", workdir)}  # fmt: skip
    summary = {}
    for name, path in models.items():
        st = ST[name]
        cases = [
            Case(
                target, lambda target=target, path=path: estimate(path, target, calibration="2.0.0")
            )  # ST figures: 2.0.0
            for target in ("stm32u5", "stm32n6")
        ]
        timed = compare(cases, **run_options)
        results = timed.outputs
        timings = [seconds for case in timed.timings for seconds in case.seconds]
        u5, n6 = results["stm32u5"], results["stm32n6"]
        print(f"\n{name}: {path.name} (source: estimator)          {'ours':>12} {'ST':>12}  ratio")
        print(row("weights (KiB)", u5["weights_bytes"] / KIB, st["weights_kib"], "KiB"))
        print(row("MACs (M)", u5["macs_total"] / 1e6, st["macs"] / 1e6, "M"))
        print(row("activations TFLM greedy (KiB)", u5["activations"]["arena_tflm_bytes"] / KIB, st["npu_ram_kib"],
                  "KiB vs ST N6 NPU internal RAM"))  # fmt: skip
        print(row("activations improved (KiB)", u5["activations"]["improved_bytes"] / KIB, st["u5_activations_kib"],
                  "KiB vs ST MCU activations"))  # fmt: skip
        print(row("latency U5 @160 MHz (ms)", u5["latency"]["ms"], st["u5_ms"], "ms"))
        print(row("latency N6 NPU (ms)", n6["latency"]["ms"], st["n6_ms"], "ms"))
        print(f"  U5 verdict: {'fits' if u5['budget']['fits'] else 'does not fit'}; "
              f"N6 verdict: {'fits' if n6['budget']['fits'] else 'does not fit'}")  # fmt: skip
        print(f"  estimator runtime: median {np.median(timings):.3f} s, max {max(timings):.3f} s per call "
              f"(limit 2 s: ratio {max(timings) / 2.0:.3f})")  # fmt: skip
        print("  " + timed.report().replace("\n", "\n  "))
        summary[name] = {
            "weights_bytes": u5["weights_bytes"],
            "macs_total": u5["macs_total"],
            "arena_tflm_bytes": u5["activations"]["arena_tflm_bytes"],
            "improved_bytes": u5["activations"]["improved_bytes"],
            "latency_u5_ms": u5["latency"]["ms"],
            "latency_n6_ms": n6["latency"]["ms"],
            "runtime_max_s": max(timings),
            "source": "estimator",
            "timing": timed.to_dict(),
        }
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    run_script(main)
