"""Benchmark: stm32msg protocol throughput of YAMNet-256 int8 patch inferences on a virtual board over a pty.

Prints patches/s against the 50/s target, the share of each patch's time spent in inference (LiteRT reference
kernels, timed on the host with the same kernels) versus transport + protocol, the bytes each patch puts on the
wire and what a real 921 600-baud link would cost, agreement with the host reference, and the reported (virtual)
latency. The board's batch and the host's batch of the same patches run interleaved after a warm-up batch
(bench/harness.py: min / median / max, the load before and after, valid for the README or not).

    python bench/hil.py                       # builds YAMNet-256 int8 (pretrained if AED_MODELS_MIRROR is set)
    python bench/hil.py --model m.tflite --patches 300
    python bench/hil.py --model yamnet_1024_qdq.onnx --profile stm32n6570-dk   # N6 model (onnxruntime, float I/O)
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402 - after the TF log level is set
from harness import Case, add_arguments, compare, options, run_script  # noqa: E402

from hil_runner.transport import Transport  # noqa: E402

TARGET_PER_S = 50.0
ST_LATENCY_MS = {"b-u585i-iot02a": 281.95, "stm32n6570-dk": 9.88}  # ST: YAMNet-256 on U5, YAMNet-1024 on N6
BAUD = 921600


class CountingLink:
    """Counts the bytes a transport moves in each direction."""

    def __init__(self, link: Transport) -> None:
        self.link, self.sent, self.received = link, 0, 0

    def write(self, data: bytes) -> None:
        self.sent += len(data)
        self.link.write(data)

    def read_some(self, n: int, timeout: float) -> bytes:
        data = self.link.read_some(n, timeout)
        self.received += len(data)
        return data

    def reset_input(self) -> None:
        self.link.reset_input()


def build_model(directory: Path) -> Path:
    from aed.models import build_yamnet_256
    from aed.quantize import to_int8_tflite

    mirror = os.environ.get("AED_MODELS_MIRROR")
    pretrained = bool(mirror and Path(mirror).is_dir())
    model = build_yamnet_256(10, pretrained=pretrained)
    calibration = np.random.default_rng(0).normal(-2.0, 2.0, size=(32, 64, 96, 1)).astype(np.float32)
    path = directory / "yamnet_256_int8.tflite"
    to_int8_tflite(model, calibration, path)
    print(
        f"model: YAMNet-256 int8 built ({'pretrained backbone' if pretrained else 'random weights'}): {path}"
    )
    return path


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="int8 .tflite (default: build YAMNet-256)")
    parser.add_argument("--patches", type=int, default=200, help="patch inferences per timed batch")
    parser.add_argument("--profile", default="b-u585i-iot02a")
    parser.add_argument(
        "--pin", action="store_true", help="pin host and virtual board to separate cores (a real board has its own "
        "CPU); faster on an idle machine, slower when other processes compete for the cores"
    )  # fmt: skip
    add_arguments(parser)
    args = parser.parse_args()
    run_options = options(args)

    from hil_runner.farm.virtual import start_vboard, stop_process
    from hil_runner.litert import load_reference
    from hil_runner.protocol.host import Timeouts, ValidationClient
    from hil_runner.protocol.tensors import quantize
    from hil_runner.transport import open_transport

    with tempfile.TemporaryDirectory() as scratch:
        model_path = args.model or build_model(Path(scratch))
        host = load_reference(model_path)
        spec = host.inputs[0]
        rng = np.random.default_rng(1)
        patches = rng.normal(-2.0, 2.0, size=(args.patches, *spec.shape)).astype(np.float32)
        inputs = [quantize(p, spec) for p in patches]

        board = start_vboard("bench", args.profile, model=model_path, baud=BAUD)
        pinned = args.pin and len(os.sched_getaffinity(0)) >= 2
        original_affinity = os.sched_getaffinity(0)
        if pinned:
            host_core, board_core = sorted(original_affinity)[:2]
            os.sched_setaffinity(board.process.pid, {board_core})
            os.sched_setaffinity(0, {host_core})
        try:
            with open_transport(board.descriptor) as transport:
                link = CountingLink(transport)
                client = ValidationClient(link, Timeouts(settle=0.1), where="bench vboard")
                client.connect()
                [model] = client.models()

                def board_batch() -> list:
                    link.sent = link.received = 0  # the last batch's bytes are the ones reported
                    return [client.run(model, [x], first=i == 0) for i, x in enumerate(inputs)]

                def host_batch() -> list:
                    return [host.run([x])[0] for x in inputs]

                # one request at a time: the host waits while the board computes, one busy process at a time
                timed = compare(
                    [Case("virtual board over pty", board_batch), Case("host LiteRT reference", host_batch)],
                    **run_options,
                )
                wire_sent, wire_received = link.sent, link.received
        finally:
            stop_process(board.process)
            os.sched_setaffinity(0, original_affinity)
        results, reference = timed.outputs["virtual board over pty"], timed.outputs["host LiteRT reference"]
        total_s = timed["virtual board over pty"].median
        inference_s = timed["host LiteRT reference"].median

    n = len(inputs)
    per_patch_ms = total_s / n * 1e3
    inference_ms = inference_s / n * 1e3
    transport_ms = max(per_patch_ms - inference_ms, 0.0)
    rate = n / total_s
    wire_bytes = (wire_sent + wire_received) / n
    real_link_ms = wire_bytes * 10 / BAUD * 1e3  # 8N1: 10 bits per byte
    agree = np.mean(
        [np.argmax(r.outputs[0]) == np.argmax(h) for r, h in zip(results, reference, strict=True)]
    )
    exact = np.mean([np.array_equal(r.outputs[0], h) for r, h in zip(results, reference, strict=True)])
    reported = results[-1].duration_ms

    print(f"virtual board: {board.descriptor} ({args.profile}), {n} patches, kernels {host.kernels}, "
          f"{'host and board pinned to separate cores' if pinned else 'not pinned'}")  # fmt: skip
    print(f"throughput:    {rate:.1f} patch inferences/s ({per_patch_ms:.2f} ms/patch); target >= {TARGET_PER_S:.0f}/s "
          f"-> ratio {rate / TARGET_PER_S:.2f} ({'met' if rate >= TARGET_PER_S else 'NOT met'})")  # fmt: skip
    fastest = timed["virtual board over pty"].minimum
    print(f"batches:       median of {len(timed['virtual board over pty'].seconds)} batches of {n}; fastest batch "
          f"{n / fastest:.1f}/s, slowest {n / timed['virtual board over pty'].maximum:.1f}/s")  # fmt: skip
    print(f"time share:    inference {inference_ms:.2f} ms ({inference_ms / per_patch_ms:.0%}), "
          f"transport + protocol {transport_ms:.2f} ms ({transport_ms / per_patch_ms:.0%})")  # fmt: skip
    print(f"wire:          {wire_bytes:.0f} B/patch ({wire_sent / n:.0f} host->device incl. syncs received "
          f"{wire_received / n:.0f}); pty equivalent {wire_bytes * 10 * rate / 1e6:.2f} Mbaud")  # fmt: skip
    print(f"real link:     {real_link_ms:.1f} ms/patch at {BAUD} baud -> at most {1e3 / real_link_ms:.1f} patches/s "
          f"before on-device inference ({reported:.1f} ms on the U5 -> {1e3 / (real_link_ms + reported):.2f}/s)")  # fmt: skip
    print(f"agreement:     top-1 {agree:.1%}, bit-exact {exact:.1%} vs the host reference ({host.kernels})")
    st_ms = ST_LATENCY_MS.get(args.profile)
    versus = f"vs ST {st_ms} ms -> {(reported / st_ms - 1) * 100:+.2f}%" if st_ms else ""
    print(f"latency:       reported {reported:.2f} ms (source: virtual) {versus}")
    print(timed.report())
    timed.write_json(
        args.json, {"patches_per_s": rate, "target_per_s": TARGET_PER_S, "profile": args.profile}
    )
    return 0


if __name__ == "__main__":
    run_script(main)
