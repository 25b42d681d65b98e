"""Planners: TFLM greedy rules, the improved planner's savings, and the replay proof that plans are safe."""

from __future__ import annotations

from pathlib import Path

import pytest

from aed.footprint import load_graph
from aed.footprint.planner import ALIGNMENT, buffers_of, plan_greedy, plan_improved
from aed.footprint.replay import UnsafePlanError, replay


def _live_overlaps(plan) -> list[tuple[int, int]]:
    clashes = []
    buffers = list(plan.buffers.values())
    for i, a in enumerate(buffers):
        for b in buffers[i + 1 :]:
            live = not (a.last < b.first or b.last < a.first)
            apart = a.offset + a.size <= b.offset or b.offset + b.size <= a.offset
            if live and not apart:
                clashes.append((a.tensor, b.tensor))
    return clashes


@pytest.mark.parametrize("fixture", ["tiny_int8", "yamnet256_int8"])
def test_greedy_is_disjoint_aligned_and_replays(fixture: str, request) -> None:
    graph = load_graph(request.getfixturevalue(fixture))
    plan = plan_greedy(graph)
    assert not _live_overlaps(plan)
    assert all(b.offset % ALIGNMENT == 0 and b.size % ALIGNMENT == 0 for b in plan.buffers.values())
    # The arena can never be smaller than the largest set of simultaneously live buffers.
    buffers = buffers_of(graph)
    peak = max(sum(b.size for b in buffers.values() if b.first <= t <= b.last) for t in range(len(graph.ops)))
    assert plan.head >= peak
    replay(graph, plan)


@pytest.mark.parametrize("fixture", ["tiny_int8", "yamnet256_int8"])
def test_improved_plan_is_safe_and_not_larger(fixture: str, request) -> None:
    graph = load_graph(request.getfixturevalue(fixture))
    improved = plan_improved(graph)
    assert improved.head <= plan_greedy(graph).head
    replay(graph, improved)  # raises UnsafePlanError on the first clobbered input value


def test_improved_overlaps_on_yamnet256(yamnet256_int8: Path) -> None:
    graph = load_graph(yamnet256_int8)
    plan = plan_improved(graph)
    assert _live_overlaps(plan), "the improved planner should reuse dying input buffers"
    assert plan.head <= 109.57 * 1024  # ST's U5 MCU figure


def test_replay_catches_a_shift_one_row_too_small(yamnet256_int8: Path) -> None:
    """Move one streamed output up by 16 bytes past its safe shift: the replay must report the clobbered input."""
    graph = load_graph(yamnet256_int8)
    plan = plan_improved(graph)
    (source, target), shift = next(
        (pair, shift)
        for pair, shift in plan.overlaps.items()
        if plan.buffers[pair[0]].offset - plan.buffers[pair[1]].offset == shift
    )
    plan.buffers[target].offset += ALIGNMENT
    plan.head = max(plan.head, plan.buffers[target].offset + plan.buffers[target].size)
    with pytest.raises(UnsafePlanError, match="overwritten"):
        replay(graph, plan)


def test_replay_catches_generic_op_overlap(tiny_int8: Path) -> None:
    graph = load_graph(tiny_int8)
    plan = plan_greedy(graph)
    fc = next(op for op in graph.ops if op.op == "FULLY_CONNECTED")
    source = next(i for i in fc.inputs if i in plan.buffers)
    plan.buffers[fc.outputs[0]].offset = plan.buffers[source].offset
    with pytest.raises(UnsafePlanError, match="FULLY_CONNECTED"):
        replay(graph, plan)
