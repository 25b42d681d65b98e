"""Activation memory planners.

`plan_greedy` follows TFLM's GreedyMemoryPlanner: every non-constant tensor is a buffer living from the op that
writes it (model inputs: op 0) to the last op that reads it (model outputs: the last op); buffers are placed
largest first at the lowest 16-byte-aligned offset that does not overlap any placed buffer whose lifetime
intersects.

`plan_improved` uses the same order and placement, but lets the output of a row-streaming op (conv, depthwise,
pooling, element-wise) overlap an input that dies at that op, as ST's allocator does. The overlap is only allowed
at input-to-output offset distances d = off(in) - off(out) >= d_min, where d_min guarantees that output row r
never lands on any input row that output rows r, r+1, ... still read (see `min_input_shift`). That is
conservative for any write order inside a row. `aed.footprint.replay` re-checks every plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aed.footprint.graph import Graph
from aed.footprint.ops import input_rows_read, row_bytes, rows_of, streams_rows

ALIGNMENT = 16


@dataclass
class Buffer:
    tensor: int
    size: int  # aligned
    first: int
    last: int
    offset: int = -1


@dataclass
class Plan:
    buffers: dict[int, Buffer]  # by tensor index
    head: int  # arena size: max(offset + size)
    # (input tensor, output tensor) -> minimum shift off(in) - off(out) at which they may overlap
    overlaps: dict[tuple[int, int], int] = field(default_factory=dict)


def align(size: int, alignment: int = ALIGNMENT) -> int:
    return -(-size // alignment) * alignment


def buffers_of(graph: Graph) -> dict[int, Buffer]:
    last_op = len(graph.ops) - 1
    buffers: dict[int, Buffer] = {}
    for index in graph.inputs:
        buffers[index] = Buffer(index, align(graph.tensors[index].nbytes), 0, 0)
    for op in graph.ops:
        for index in op.outputs:
            if index >= 0 and index not in buffers:
                buffers[index] = Buffer(index, align(graph.tensors[index].nbytes), op.index, op.index)
        for index in op.inputs:
            if index in buffers:
                buffers[index].last = max(buffers[index].last, op.index)
    for index in graph.outputs:
        if index in buffers:
            buffers[index].last = last_op
    return buffers


def min_input_shift(graph: Graph, op_index: int, source: int, target: int) -> int:
    """Smallest off(source) - off(target) that is safe when `op_index` streams `source` into `target`.

    Output row r occupies [r*ro, (r+1)*ro) relative to the output start; it must end at or before the first
    input row still read by output rows r, r+1, ..., i.e. (r+1)*ro <= d + first_read(r)*ri for every r.
    """
    op = graph.ops[op_index]
    src, dst = graph.tensors[source], graph.tensors[target]
    ro, ri = row_bytes(dst), row_bytes(src)
    n_out = rows_of(dst)
    shift = -(10**18)
    first_needed = rows_of(src)  # walking backwards: min first row read by rows r..end
    for r in range(n_out - 1, -1, -1):
        first_needed = min(first_needed, input_rows_read(graph, op, src, r)[0])
        shift = max(shift, (r + 1) * ro - first_needed * ri)
    return align(shift)


def _relaxed_pairs(graph: Graph, buffers: dict[int, Buffer]) -> dict[tuple[int, int], int]:
    pairs = {}
    for op in graph.ops:
        if len(op.outputs) != 1 or op.outputs[0] not in buffers:
            continue
        target = op.outputs[0]
        if target in graph.outputs and target in graph.inputs:
            continue
        for source in {i for i in op.inputs if i in buffers}:
            if buffers[source].last != op.index or source in graph.outputs:
                continue  # the input is still needed after this op
            if not streams_rows(graph, op, graph.tensors[source]):
                continue
            pairs[(source, target)] = min_input_shift(graph, op.index, source, target)
    return pairs


def _forbidden(
    buffer: Buffer, placed: list[Buffer], pairs: dict[tuple[int, int], int]
) -> list[tuple[int, int]]:
    """Open intervals (lo, hi) of start offsets where `buffer` would clash with a placed, live buffer."""
    forbidden = []
    for other in placed:
        if other.last < buffer.first or buffer.last < other.first:
            continue
        if (buffer.tensor, other.tensor) in pairs:  # buffer is the streamed input, other the output
            forbidden.append(
                (other.offset - buffer.size, other.offset + pairs[(buffer.tensor, other.tensor)])
            )
        elif (other.tensor, buffer.tensor) in pairs:  # buffer is the output, other the streamed input
            forbidden.append((other.offset - pairs[(other.tensor, buffer.tensor)], other.offset + other.size))
        else:
            forbidden.append((other.offset - buffer.size, other.offset + other.size))
    return forbidden


def _allowed(start: int, forbidden: list[tuple[int, int]]) -> bool:
    return all(not (lo < start < hi) for lo, hi in forbidden)


def _place(
    buffers: dict[int, Buffer],
    pairs: dict[tuple[int, int], int],
    two_sided: bool = False,
    by_time: bool = False,
) -> int:
    """Place largest first. One-sided (TFLM): lowest free offset >= 0. Two-sided: the free offset (possibly
    below the current base) that grows the arena least, then shift everything so the arena starts at 0."""
    if by_time:
        order = sorted(buffers.values(), key=lambda b: (b.first, -b.size, b.tensor))
    else:
        # TFLM fills its sort array from the tail and bubble-sorts it, so equal sizes go highest tensor first.
        order = sorted(buffers.values(), key=lambda b: (-b.size, -b.tensor))
    placed: list[Buffer] = []
    for buffer in order:
        forbidden = _forbidden(buffer, placed, pairs)
        if not two_sided or not placed:
            candidates = sorted({0} | {hi for _, hi in forbidden if hi > 0})
            buffer.offset = next(c for c in candidates if _allowed(c, forbidden))
        else:
            low = min(b.offset for b in placed)
            high = max(b.offset + b.size for b in placed)
            candidates = {low} | {hi for _, hi in forbidden} | {lo for lo, _ in forbidden}
            best = min(
                (max(high, c + buffer.size) - min(low, c), c) for c in candidates if _allowed(c, forbidden)
            )
            buffer.offset = best[1]
        placed.append(buffer)
    base = min((b.offset for b in buffers.values()), default=0)
    for buffer in buffers.values():
        buffer.offset -= base
    if two_sided:
        _compact(buffers, pairs)
    return max((b.offset + b.size for b in buffers.values()), default=0)


def _compact(buffers: dict[int, Buffer], pairs: dict[tuple[int, int], int], passes: int = 8) -> None:
    """Slide buffers down, highest end first, to the lowest offset the same constraints allow."""
    for _ in range(passes):
        moved = False
        for buffer in sorted(buffers.values(), key=lambda b: -(b.offset + b.size)):
            others = [b for b in buffers.values() if b is not buffer]
            forbidden = _forbidden(buffer, others, pairs)
            candidates = sorted({0} | {hi for _, hi in forbidden if hi > 0})
            lowest = next(c for c in candidates if _allowed(c, forbidden))
            if lowest < buffer.offset:
                buffer.offset = lowest
                moved = True
        if not moved:
            return


def plan_greedy(graph: Graph) -> Plan:
    buffers = buffers_of(graph)
    return Plan(buffers=buffers, head=_place(buffers, {}))


def plan_improved(graph: Graph) -> Plan:
    """Smallest of four placements (size or execution order, one- or two-sided) with the streaming overlaps
    allowed; every one of them respects the same constraints, so the smallest is as safe as the others."""
    plans = []
    for by_time in (False, True):
        for two_sided in (False, True):
            buffers = buffers_of(graph)
            pairs = _relaxed_pairs(graph, buffers)
            head = _place(buffers, pairs, two_sided, by_time)
            plans.append(Plan(buffers=buffers, head=head, overlaps=pairs))
    return min(plans, key=lambda plan: plan.head)
