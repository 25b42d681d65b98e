"""Replay a memory plan byte by byte to prove it safe.

Every arena byte carries a tag (tensor id, element index). Ops run in execution order; a row-streaming op writes
output row r and only *then* checks that every input row that output row r reads still holds its own values, so
any write inside the row that could land on a value the same row still needs is caught whatever order the kernel
uses within a row. Other ops write their whole output and then check all their inputs (they may read anything at
any time). Model outputs are checked at the end. The replay derives the rows each op reads from the op geometry
itself (stride, kernel, 'same' padding), not from the planner's shift table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aed.footprint.graph import Graph, Tensor, same_padding
from aed.footprint.ops import rule_for
from aed.footprint.planner import Plan


class UnsafePlanError(AssertionError):
    pass


@dataclass
class _Arena:
    owner: np.ndarray  # tensor id per byte, -1 = free
    element: np.ndarray  # byte index inside the owning tensor

    def write(self, tensor: Tensor, offset: int, start: int, stop: int) -> None:
        self.owner[offset + start : offset + stop] = tensor.index
        self.element[offset + start : offset + stop] = np.arange(start, stop)

    def check(self, tensor: Tensor, offset: int, start: int, stop: int, context: str) -> None:
        owner = self.owner[offset + start : offset + stop]
        element = self.element[offset + start : offset + stop]
        bad = np.flatnonzero((owner != tensor.index) | (element != np.arange(start, stop)))
        if bad.size:
            first = int(bad[0]) + start
            raise UnsafePlanError(
                f"{context}: byte {first} of tensor '{tensor.name}' (arena offset {offset + first}) was overwritten "
                f"by tensor #{int(owner[bad[0]])} before it was read"
            )


def _rows(tensor: Tensor) -> int:
    return tensor.shape[1] if len(tensor.shape) >= 3 else 1


def _read_range(graph: Graph, op_index: int, source: Tensor, out: Tensor, r: int) -> tuple[int, int]:
    """Rows of `source` read for output row r, computed from the op geometry."""
    op = graph.ops[op_index]
    access = rule_for(graph, op).access
    if access == "window":
        kh = op.attrs["kernel"][0]
        stride, dilation = op.attrs["stride"][0], op.attrs.get("dilation", (1, 1))[0]
        padding = op.attrs.get("padding")
        if padding == "SAME":
            top = same_padding(_rows(source), kh, stride, dilation)[0]
        else:  # VALID pads nothing; EXPLICIT (ONNX pads) carries its own top padding
            top = 0 if padding == "VALID" else op.attrs["pad_top"]
        lo = r * stride - top
        return max(lo, 0), min(lo + (kh - 1) * dilation, _rows(source) - 1)
    if access == "elementwise" and source.shape == out.shape:
        return r, r
    return 0, _rows(source) - 1


def replay(graph: Graph, plan: Plan) -> None:
    """Raise UnsafePlanError if executing the graph over `plan` would read an overwritten value."""
    arena = _Arena(np.full(plan.head, -1, dtype=np.int32), np.zeros(plan.head, dtype=np.int64))
    offsets = {index: buffer.offset for index, buffer in plan.buffers.items()}
    for index in graph.inputs:
        arena.write(graph.tensors[index], offsets[index], 0, graph.tensors[index].nbytes)
    for op in graph.ops:
        sources = [graph.tensors[i] for i in dict.fromkeys(op.inputs) if i in offsets]
        outs = [graph.tensors[i] for i in op.outputs if i in offsets]
        context = f"op #{op.index} {op.op} '{op.name}'"
        streaming = rule_for(graph, op).access != "generic" and len(outs) == 1 and _rows(outs[0]) > 1
        if not streaming:
            for out in outs:
                arena.write(out, offsets[out.index], 0, out.nbytes)
            for source in sources:
                arena.check(source, offsets[source.index], 0, source.nbytes, context)
            continue
        out = outs[0]
        out_row = out.nbytes // _rows(out)
        for r in range(_rows(out)):
            arena.write(out, offsets[out.index], r * out_row, (r + 1) * out_row)
            for source in sources:
                lo, hi = _read_range(graph, op.index, source, out, r)
                in_row = source.nbytes // _rows(source)
                arena.check(
                    source, offsets[source.index], lo * in_row, (hi + 1) * in_row, f"{context} row {r}"
                )
    for index in graph.outputs:
        tensor = graph.tensors[index]
        arena.check(tensor, offsets[index], 0, tensor.nbytes, "model output")
