"""Flash weights as ST counts them: int8 weight elements + 4 bytes per int32 bias element.

Per-channel scales and zero points are not part of that figure (ST does not count them); they are reported
separately. A tensor shared by two ops (the converter deduplicates identical buffers) is counted once per op
that uses it, as ST lays out each layer's parameters on its own.
"""

from __future__ import annotations

from aed.footprint.graph import Graph, Op


def layer_weight_bytes(graph: Graph, op: Op) -> dict[str, int]:
    weights = biases = 0
    for tensor in graph.constant_inputs(op):
        if tensor.role == "weight":
            weights += tensor.nbytes
        elif tensor.role == "bias":
            biases += tensor.nbytes
    return {"weights": weights, "biases": biases}


def count_weights(graph: Graph) -> dict[str, int]:
    weight_bytes = bias_bytes = channels = 0
    for op in graph.ops:
        counted = layer_weight_bytes(graph, op)
        weight_bytes += counted["weights"]
        bias_bytes += counted["biases"]
        channels += sum(t.quant_channels for t in graph.constant_inputs(op) if t.role == "weight")
    return {
        "weights_bytes": weight_bytes + bias_bytes,
        "weight_tensor_bytes": weight_bytes,
        "bias_bytes": bias_bytes,
        # Stored apart from the weights figure: one float32 scale + one zero point per quantized channel
        # in the file; TFLM keeps an int32 multiplier and shift per output channel at run time.
        "per_channel_params": {"channels": channels, "tflm_runtime_bytes": 8 * channels},
    }
