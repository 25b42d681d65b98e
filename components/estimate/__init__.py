"""Step `estimate`: `aed estimate --model MODEL --target stm32u5|stm32n6 [--json]` - footprint and latency, no ST tools."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aed.footprint import TARGETS, estimate
from aed.footprint.latency import CALIBRATIONS, LATEST
from aed.records import write_json
from components.common import deprecated


def run(
    model: Path,
    target: str,
    record_path: Path | None = None,
    allow_float: bool = False,
    calibration: str = LATEST,
) -> dict:
    """The estimate of `model` on `target` (no params section: the figures depend on the model, the target and the
    ST Edge AI Core version the latency model is calibrated on)."""
    if record_path is not None and Path(record_path).is_dir():  # refused before the work, not after it
        raise IsADirectoryError(f"--out {record_path}: is a directory; give a file path for the JSON result")
    result = estimate(model, target, allow_float=allow_float, calibration=calibration)
    if record_path is not None:
        write_json(record_path, result)
    return result


def summary(result: dict) -> str:
    act, lat, budget = result["activations"], result["latency"], result["budget"]
    lines = [
        f"{result['model']} on {result['target']} ({budget['device']}) - source: {result['source']}",
        f"  weights      {result['weights_bytes']:>10,} B  ({result['weights_kib']} KiB)",
        f"  activations  {act['arena_tflm_bytes']:>10,} B  TFLM greedy ({act['arena_tflm_kib']} KiB)",
        f"               {act['improved_bytes']:>10,} B  improved ({act['improved_kib']} KiB)",
        f"  MACs         {result['macs_total']:>10,}     peak layer #{result['peak_layer']['index']} "
        f"{result['peak_layer']['op']}",
        f"  latency      {lat['ms']:>10.3f} ms ({lat['model']}, calibrated on ST Edge AI Core "
        f"{result['calibration']['stedgeai_version']}: consistent with its points, not a measurement)",
        f"  budget       {'fits' if budget['fits'] else 'DOES NOT FIT'}: flash margin "
        f"{budget['flash_margin_bytes']:,} B, RAM margin {budget['ram_margin_bytes']:,} B",
        f"  {'#':>3} {'op':<18} {'MACs':>12} {'latency ms':>11}  output",
    ]
    for layer in result["layers"]:
        lines.append(
            f"  {layer['index']:>3} {layer['op']:<18} {layer['macs']:>12,} {layer['latency_ms']:>11.4f}  "
            f"{'x'.join(map(str, layer['output_shape']))}"
        )
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("estimate", help="estimate flash, RAM, MACs and latency of an int8 model")
    parser.add_argument("--model", type=Path, metavar="PATH", help=".tflite or QDQ .onnx model (required)")
    # the old spelling `aed estimate MODEL` (deprecated: --model PATH, as every other step names a model file)
    parser.add_argument("old_model", type=Path, nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--target", choices=TARGETS, required=True)
    parser.add_argument("--json", action="store_true", help="print the full JSON result")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON result to this file")
    parser.add_argument("--allow-float", action="store_true", help="estimate a float model explicitly")
    parser.add_argument(
        "--calibration",
        choices=sorted(CALIBRATIONS),
        default=LATEST,
        help="ST Edge AI Core version whose published figures calibrate the latency and N6 blob models",
    )
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    result = run(_model_path(args), args.target, args.out, args.allow_float, args.calibration)
    print(json.dumps(result, indent=2) if args.json else summary(result))
    return 0


def _model_path(args: argparse.Namespace) -> Path:
    if args.old_model is not None and args.model is not None:
        raise ValueError(f"give the model once: --model {args.model} (not also {args.old_model})")
    if args.old_model is not None:
        deprecated("aed estimate MODEL", "aed estimate --model MODEL")
        return args.old_model
    if args.model is None:
        raise ValueError("give the model file: --model PATH")
    return args.model
