"""TensorFlow Lite Micro deployment: the improved activation plan embedded as TFLM's offline memory plan, the
arena TFLM then needs (measured, not guessed), and running models in tflite-micro (the proof: tflm_proof.py).

TFLM reads a metadata entry named `OfflineMemoryAllocation` whose buffer is int32 little-endian
`[version 1, subgraph 0, number of tensors, one arena offset per tensor]`; -1 leaves a tensor (constants, and
anything the plan does not cover) to TFLM's online planner. Kernel scratch buffers and TFLM's persistent
structures come on top of the plan: that is why the arena is measured with the tflite-micro interpreter.

What is verified and what is not: the tflite-micro Python interpreter runs TFLM's *reference* kernels. A plan that
lets an op's output overwrite a dying input is safe only for kernels that read and write in a compatible order;
on a board TFLM uses CMSIS-NN kernels, whose order differs. Nothing here proves the plan safe for CMSIS-NN.
"""

from __future__ import annotations

import contextlib
import os
import select
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aed.footprint.graph import Graph
from aed.footprint.planner import ALIGNMENT, Plan

METADATA_NAME = "OfflineMemoryAllocation"
KERNELS = "tflm-reference"
VERIFIED_WITH = (
    "the plan is verified with TFLM's reference kernels (tflite-micro Python interpreter), not with CMSIS-NN: "
    "CMSIS-NN kernels read and write in another order, so nothing here proves the plan safe on a board using them"
)
ARENA_LIMIT = 64 * 1024 * 1024  # a model needing more than this is not a microcontroller model
PROBE_TIMEOUT_S = 120.0  # one allocation attempt; it takes milliseconds


class TflmError(RuntimeError):
    """tflite-micro could not load or allocate the model at any arena size."""


def tflm_version() -> str:
    from tflite_micro import __version__

    return str(__version__)


def offline_offsets(graph: Graph, plan: Plan) -> list[int]:
    """One offset per tensor of the subgraph: the plan's for the activations, -1 (online) for the rest."""
    offsets = [-1] * len(graph.tensors)
    for index, buffer in plan.buffers.items():
        offsets[index] = buffer.offset
    return offsets


def offline_metadata(offsets: list[int]) -> bytes:
    return struct.pack(f"<{3 + len(offsets)}i", 1, 0, len(offsets), *offsets)


def embed_offline_plan(model: Path, out: Path, offsets: list[int]) -> None:
    """Write `model` with the offline plan as `OfflineMemoryAllocation` metadata (an earlier entry replaced).

    The model is re-serialised through the schema's object API, then re-aligned with tflite-micro's own aligner
    so that constant buffers keep the 16-byte alignment the converter gave them."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
    from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper as aligner

    data = Path(model).read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError(f"{model}: not a TFLite flatbuffer (no 'TFL3' identifier)")
    tree = schema.ModelT.InitFromPackedBuf(data, 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(offline_metadata(offsets), dtype=np.uint8)
    tree.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME.encode(), len(tree.buffers) - 1
    kept = [m for m in (tree.metadata or []) if (m.name or b"").decode(errors="replace") != METADATA_NAME]
    tree.metadata = [*kept, entry]
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    with tempfile.TemporaryDirectory() as scratch:
        unaligned = Path(scratch) / "unaligned.tflite"
        unaligned.write_bytes(builder.Output())
        aligner.align_tflite_model(str(unaligned), str(out))


def read_offline_offsets(model: Path) -> list[int] | None:
    """The offsets stored in a model's `OfflineMemoryAllocation` metadata, or None when it has none."""
    from ai_edge_litert import schema_py_generated as schema

    data = Path(model).read_bytes()
    tree = schema.Model.GetRootAs(data, 0)
    for i in range(tree.MetadataLength()):
        entry = tree.Metadata(i)
        if (entry.Name() or b"").decode(errors="replace") == METADATA_NAME:
            raw = tree.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
            values = struct.unpack(f"<{len(raw) // 4}i", raw)
            return list(values[3 : 3 + values[2]])
    return None


# -- the tflite-micro interpreter -------------------------------------------------------------------------------
@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """TFLM prints allocation failures and its allocation report on the C stderr: capture it (fd level)."""
    lines: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode(errors="replace").splitlines())


def load_interpreter(model_bytes: bytes, arena: int) -> Any | None:
    """A tflite-micro interpreter with tensors allocated in `arena` bytes, or None when they do not fit."""
    from tflite_micro import runtime

    with captured_stderr():
        try:
            return runtime.Interpreter.from_bytes(model_bytes, arena_size=arena)
        except RuntimeError:
            return None


# tflite-micro's Python wrapper crashes (SIGSEGV) instead of raising on some failed allocations (an arena of
# 463 B or less for any model; 2,048 B for a small test graph): every attempt that may fail runs in a child
# process, and a crash there counts as "does not allocate", which is what it is.
_PROBE = """
import sys
from tflite_micro import runtime
data = open(sys.argv[1], "rb").read()
for line in sys.stdin:
    try:
        runtime.Interpreter.from_bytes(data, arena_size=int(line))
        print("ok", flush=True)
    except RuntimeError:
        print("fail", flush=True)
"""
OK, FAILS, CRASHES = (
    "allocates",
    "fails to allocate",
    "tflite-micro crashed (a failed allocation it does not check)",
)


class Prober:
    """Allocation attempts of one model in a child process, restarted after a crash."""

    def __init__(self, model_bytes: bytes) -> None:
        self._file = tempfile.NamedTemporaryFile(suffix=".tflite")  # noqa: SIM115 - lives as long as the prober
        self._file.write(model_bytes)
        self._file.flush()
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> Prober:
        return self

    def __exit__(self, *_: object) -> None:
        self._stop()
        self._file.close()

    def outcome(self, arena: int) -> str:
        process = self._process or self._start()
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(f"{arena}\n")
            process.stdin.flush()
        except BrokenPipeError:
            return self._crashed()
        ready, _, _ = select.select([process.stdout], [], [], PROBE_TIMEOUT_S)
        if not ready:
            self._stop()
            raise TflmError(
                f"tflite-micro did not finish allocating in {arena:,} B within {PROBE_TIMEOUT_S:.0f} s"
            )
        reply = process.stdout.readline().strip()
        return {"ok": OK, "fail": FAILS}.get(reply) or self._crashed()

    def _start(self) -> subprocess.Popen:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _PROBE, self._file.name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        return self._process

    def _crashed(self) -> str:
        self._stop()
        return CRASHES

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


def allocates(model_bytes: bytes, arena: int) -> bool:
    with Prober(model_bytes) as prober:
        return prober.outcome(arena) == OK


@dataclass(frozen=True)
class Arena:
    """The smallest arena TFLM allocates the model in, and TFLM's own split of it."""

    bytes: int  # configure exactly this (a multiple of the 16-byte alignment)
    head: int  # the memory plan: offline offsets plus whatever TFLM planned online (scratch buffers)
    tail: int  # persistent: tensor structs, quantization params, kernel op data

    def to_dict(self) -> dict[str, int]:
        # transient: what allocation needs beyond head and tail while it runs (TFLM's temporary allocations)
        transient = self.bytes - self.head - self.tail
        return {
            "arena_bytes": self.bytes,
            "head_bytes": self.head,
            "tail_bytes": self.tail,
            "transient_bytes": transient,
        }


def smallest_arena(model_bytes: bytes) -> Arena:
    """Bisect, in alignment steps, for the smallest arena that allocates; then TFLM's head / tail at that size."""
    with Prober(model_bytes) as prober:
        high = ALIGNMENT * 1024
        while prober.outcome(high) != OK:
            if high >= ARENA_LIMIT:
                raise TflmError(
                    f"tflite-micro cannot allocate the model in {ARENA_LIMIT:,} B (or cannot load it)"
                )
            high *= 2
        low_steps, high_steps = (
            0,
            high // ALIGNMENT,
        )  # in alignment steps: low fails (or is zero), high allocates
        while high_steps - low_steps > 1:
            middle = (low_steps + high_steps) // 2
            if prober.outcome(middle * ALIGNMENT) == OK:
                high_steps = middle
            else:
                low_steps = middle
    size = high_steps * ALIGNMENT
    head, tail = allocation_report(model_bytes, size)
    return Arena(size, head, tail)


def allocation_report(model_bytes: bytes, arena: int) -> tuple[int, int]:
    interpreter = load_interpreter(model_bytes, arena)
    if interpreter is None:
        raise TflmError(f"tflite-micro no longer allocates the model in {arena:,} B")
    with captured_stderr() as lines:
        interpreter.print_allocations()
    figures = {}
    for line in lines:
        for name in ("head", "tail"):
            prefix = f"Arena allocation {name} "
            if prefix in line:
                figures[name] = int(line.split(prefix)[1].split()[0])
    if set(figures) != {"head", "tail"}:
        raise TflmError("tflite-micro printed no arena head / tail figures")
    return figures["head"], figures["tail"]


def input_quantization(model_bytes: bytes) -> tuple[tuple[int, ...], float, int]:
    """(input shape, scale, zero point) of the int8 model input, read through tflite-micro."""
    interpreter = load_interpreter(model_bytes, ARENA_LIMIT)
    if interpreter is None:
        raise TflmError("tflite-micro cannot load the model")
    detail = interpreter.get_input_details(0)
    try:
        with captured_stderr():  # the wrapper prints the out-of-range index before raising
            interpreter.get_input_details(1)
    except IndexError:
        pass
    else:
        raise TflmError(
            "the model has more than one input; the TFLM proof feeds patches to single-input models"
        )
    quant = detail["quantization_parameters"]
    if detail["dtype"] is not np.int8 or not len(quant["scales"]):
        raise TflmError("the model input is not int8-quantized; the TFLM runtime takes int8 models only")
    return tuple(int(d) for d in detail["shape"]), float(quant["scales"][0]), int(quant["zero_points"][0])


def run_outputs(model_bytes: bytes, arena: int, inputs: np.ndarray) -> np.ndarray:
    """The model's first output for each int8 input (in order), as raw bytes (one row per input)."""
    interpreter = load_interpreter(model_bytes, arena)
    if interpreter is None:
        raise TflmError(f"tflite-micro cannot allocate the model in {arena:,} B")
    rows = []
    for sample in inputs:
        interpreter.set_input(sample, 0)
        interpreter.invoke()
        rows.append(np.frombuffer(interpreter.get_output(0).tobytes(), dtype=np.uint8))
    return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.uint8)
