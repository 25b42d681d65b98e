"""QDQ ONNX models give the same int8 figures as the equivalent TFLite model."""

from __future__ import annotations

from pathlib import Path

import pytest

from aed.footprint import NotQuantizedError, estimate, load_graph
from aed.footprint.planner import plan_greedy, plan_improved
from aed.footprint.replay import replay


def _by_op(result: dict) -> dict[str, int]:
    totals: dict[str, int] = {}
    for layer in result["layers"]:
        totals[layer["op"]] = totals.get(layer["op"], 0) + layer["macs"]
    return {op: macs for op, macs in totals.items() if macs}


def test_tiny_qdq_matches_tflite(tiny_qdq: Path, tiny_int8: Path) -> None:
    onnx_result, tflite_result = estimate(tiny_qdq, "stm32u5"), estimate(tiny_int8, "stm32u5")
    assert onnx_result["model_format"] == "onnx" and onnx_result["quantization"] == "int8"
    assert _by_op(onnx_result) == _by_op(tflite_result)
    assert onnx_result["weights_bytes"] == tflite_result["weights_bytes"]


def test_qdq_graph_is_nhwc_int8(yamnet256_qdq: Path) -> None:
    graph = load_graph(yamnet256_qdq)
    convs = [op for op in graph.ops if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert len(convs) == 11
    first = graph.tensors[convs[0].outputs[0]]
    assert first.shape == (1, 48, 32, 32) and first.dtype == "int8"
    assert not any(op.op.startswith("ONNX:") for op in graph.ops)


def test_yamnet256_qdq_figures_and_safe_plan(yamnet256_qdq: Path) -> None:
    result = estimate(yamnet256_qdq, "stm32u5")
    assert result["macs_total"] == 23_927_296
    assert abs(result["weights_kib"] - 135.91) / 135.91 < 0.001
    graph = load_graph(yamnet256_qdq)
    assert plan_greedy(graph).head == result["activations"]["arena_tflm_bytes"]
    plan = plan_improved(graph)
    replay(graph, plan)
    assert plan.head <= 109.57 * 1024


def test_float_onnx_refused(tiny_float_onnx: Path) -> None:
    with pytest.raises(NotQuantizedError, match="tiny_f32.onnx"):
        estimate(tiny_float_onnx, "stm32n6")


@pytest.mark.slow
def test_yamnet1024_qdq(yamnet1024_qdq: Path) -> None:
    result = estimate(yamnet1024_qdq, "stm32n6", calibration="2.0.0")  # ST's 2.0.0 card: 9.88 ms
    assert abs(result["macs_total"] - 68_647_936) / 68_647_936 < 0.02
    assert abs(result["weights_kib"] - 3162.66) / 3162.66 < 0.001
    assert result["latency"]["ms"] == pytest.approx(9.88, rel=0.02)
    newest = estimate(yamnet1024_qdq, "stm32n6")  # the default: the newest calibration, ST's 3.0.0 card
    assert newest["latency"]["ms"] == pytest.approx(9.12, rel=0.02)
    graph = load_graph(yamnet1024_qdq)
    replay(graph, plan_improved(graph))


def test_unknown_op_is_named(tmp_path: Path) -> None:
    """A QDQ conv followed by Erf: the estimator names the op instead of counting it as zero."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from aed.footprint import UnknownOpError

    inits = [
        numpy_helper.from_array(np.ones((4, 3, 3, 3), np.int8), "w_q"),
        numpy_helper.from_array(np.full(4, 0.1, np.float32), "w_s"),
        numpy_helper.from_array(np.zeros(4, np.int8), "w_z"),
        numpy_helper.from_array(np.array(0.05, np.float32), "a_s"),
        numpy_helper.from_array(np.array(0, np.int8), "a_z"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "a_s", "a_z"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "a_s", "a_z"], ["x_d"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w_d"], axis=0),
        helper.make_node("Conv", ["x_d", "w_d"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "a_s", "a_z"], ["c_q"]),
        helper.make_node("DequantizeLinear", ["c_q", "a_s", "a_z"], ["c_d"]),
        helper.make_node("Erf", ["c_d"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
    )
    path = tmp_path / "erf.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(UnknownOpError, match=r"erf.onnx: operator ONNX:Erf"):
        estimate(path, "stm32u5")
