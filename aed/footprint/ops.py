"""What the estimator knows about each operator: its MAC count and how its kernel walks memory.

Every operator the estimator accepts is listed here, with an explicit MAC rule (zero where the op does no
multiply-accumulates, e.g. TRANSPOSE). Anything else raises UnknownOpError naming the op, so a new layer type can
never be counted as free by accident.

Access patterns (used by the improved planner and checked by the replay test):
- "window": the kernel produces output rows in order and output row r reads only input rows
  [r*stride - pad_top, r*stride - pad_top + (k-1)*dilation] (conv, depthwise, pooling);
- "elementwise": output row r reads input row r of each same-shaped input (activations, add, quantize);
- "generic": anything else; it may read any input element at any time, so its inputs and outputs stay disjoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aed.footprint.graph import Graph, Op, Tensor, UnknownOpError


@dataclass(frozen=True)
class OpRule:
    macs: Callable[[Graph, Op], int]
    access: str  # window | elementwise | generic


def _out(graph: Graph, op: Op) -> Tensor:
    return graph.tensors[op.outputs[0]]


def _in(graph: Graph, op: Op) -> Tensor:
    return graph.activation_inputs(op)[0]


def _conv_macs(graph: Graph, op: Op) -> int:
    out = _out(graph, op)
    kh, kw = op.attrs["kernel"]
    c_in = _in(graph, op).shape[-1]
    groups = op.attrs.get("groups", 1)
    return out.elements * kh * kw * (c_in // groups)


def _depthwise_macs(graph: Graph, op: Op) -> int:
    kh, kw = op.attrs["kernel"]
    return _out(graph, op).elements * kh * kw


def _fc_macs(graph: Graph, op: Op) -> int:
    out = _out(graph, op)
    return out.elements * _in(graph, op).shape[-1]


def _pool_macs(graph: Graph, op: Op) -> int:
    kh, kw = op.attrs["kernel"]
    return _out(graph, op).elements * kh * kw


def _reduce_macs(graph: Graph, op: Op) -> int:
    return _in(graph, op).elements


def _elementwise_macs(graph: Graph, op: Op) -> int:
    return _out(graph, op).elements


def _zero(graph: Graph, op: Op) -> int:
    return 0


RULES: dict[str, OpRule] = {
    "CONV_2D": OpRule(_conv_macs, "window"),
    "DEPTHWISE_CONV_2D": OpRule(_depthwise_macs, "window"),
    "AVERAGE_POOL_2D": OpRule(_pool_macs, "window"),
    "MAX_POOL_2D": OpRule(_pool_macs, "window"),
    "FULLY_CONNECTED": OpRule(_fc_macs, "generic"),
    "MEAN": OpRule(_reduce_macs, "generic"),
    "ADD": OpRule(_elementwise_macs, "elementwise"),
    "SUB": OpRule(_elementwise_macs, "elementwise"),
    "MUL": OpRule(_elementwise_macs, "elementwise"),
    # Activations and (de)quantization move data but do no multiply-accumulate.
    "RELU": OpRule(_zero, "elementwise"),
    "RELU6": OpRule(_zero, "elementwise"),
    "LEAKY_RELU": OpRule(_zero, "elementwise"),
    "LOGISTIC": OpRule(_zero, "elementwise"),
    "TANH": OpRule(_zero, "elementwise"),
    "HARD_SWISH": OpRule(_zero, "elementwise"),
    "QUANTIZE": OpRule(_zero, "elementwise"),
    "DEQUANTIZE": OpRule(_zero, "elementwise"),
    # Data movement and normalisation: no MACs (ST's MACC counts a few for these; see docs/conversion.md).
    "TRANSPOSE": OpRule(_zero, "generic"),
    "RESHAPE": OpRule(_zero, "generic"),
    "SQUEEZE": OpRule(_zero, "generic"),
    "SOFTMAX": OpRule(_zero, "generic"),
    "CONCATENATION": OpRule(_zero, "generic"),
    "PAD": OpRule(_zero, "generic"),
}


def rule_for(graph: Graph, op: Op) -> OpRule:
    rule = RULES.get(op.op)
    if rule is None:
        raise UnknownOpError(
            f"{graph.path}: operator {op.op} (op #{op.index} '{op.name}') is not known to the estimator; "
            f"known: {', '.join(sorted(RULES))}"
        )
    return rule


def op_macs(graph: Graph, op: Op) -> int:
    return int(rule_for(graph, op).macs(graph, op))


def rows_of(tensor: Tensor) -> int:
    """Number of rows a kernel writes in order: H for NHWC / rank-3 tensors, one row otherwise."""
    return tensor.shape[1] if len(tensor.shape) >= 3 else 1


def row_bytes(tensor: Tensor) -> int:
    return tensor.nbytes // rows_of(tensor)


def input_rows_read(graph: Graph, op: Op, source: Tensor, out_row: int) -> tuple[int, int]:
    """Inclusive range of `source` rows read to produce output row `out_row` (clipped to the tensor)."""
    rule = rule_for(graph, op)
    last = rows_of(source) - 1
    if rule.access == "window":
        kh, _ = op.attrs["kernel"]
        stride, _ = op.attrs["stride"]
        dilation, _ = op.attrs.get("dilation", (1, 1))
        first_row = out_row * stride - op.attrs["pad_top"]
        return max(first_row, 0), min(first_row + (kh - 1) * dilation, last)
    if rule.access == "elementwise" and rows_of(source) == rows_of(_out(graph, op)):
        return out_row, out_row
    return 0, last


def streams_rows(graph: Graph, op: Op, source: Tensor) -> bool:
    """True when the kernel reads `source` row by row in step with the output rows it writes."""
    rule = rule_for(graph, op)
    if rule.access == "generic" or len(op.outputs) != 1:
        return False
    out = _out(graph, op)
    if rows_of(out) == 1 or len(source.shape) != len(out.shape) or source.shape[0] != 1:
        return False
    if rule.access == "elementwise":
        return source.shape == out.shape
    return True
