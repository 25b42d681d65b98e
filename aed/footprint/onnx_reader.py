"""Read a QDQ .onnx model into the estimator's Graph: the int8 network a converter would deploy.

QuantizeLinear -> DequantizeLinear pairs around an activation become one int8 tensor; DequantizeLinear of an int8
(or int32) initializer is that weight (or bias). A compute node whose activation inputs all come through
DequantizeLinear and whose output goes only into QuantizeLinear is an int8 op. A QuantizeLinear / DequantizeLinear
left over (float model input, float softmax) becomes a QUANTIZE / DEQUANTIZE op. NCHW tensors of the conv chain are
reported as NHWC, the layout of ST's and TFLM's int8 kernels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aed.footprint.graph import DTYPE_SIZES, Graph, ModelFormatError, Op, Tensor, same_padding

_OPS = {
    "Gemm": "FULLY_CONNECTED",
    "MatMul": "FULLY_CONNECTED",
    "GlobalAveragePool": "MEAN",
    "ReduceMean": "MEAN",
    "AveragePool": "AVERAGE_POOL_2D",
    "MaxPool": "MAX_POOL_2D",
    "Relu": "RELU",
    "Clip": "RELU6",
    "LeakyRelu": "LEAKY_RELU",
    "Sigmoid": "LOGISTIC",
    "Tanh": "TANH",
    "HardSwish": "HARD_SWISH",
    "Add": "ADD",
    "Sub": "SUB",
    "Mul": "MUL",
    "Transpose": "TRANSPOSE",
    "Reshape": "RESHAPE",
    "Flatten": "RESHAPE",
    "Squeeze": "SQUEEZE",
    "Unsqueeze": "SQUEEZE",
    "Softmax": "SOFTMAX",
    "Concat": "CONCATENATION",
    "Pad": "PAD",
    "QuantizeLinear": "QUANTIZE",
    "DequantizeLinear": "DEQUANTIZE",
}
_LAYOUT_OPS = {"Conv", "AveragePool", "MaxPool", "GlobalAveragePool"}
_PASS_LAYOUT = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSwish", "Add", "Sub", "Mul",
                "QuantizeLinear", "DequantizeLinear"}  # fmt: skip
_WEIGHT_SLOTS = {"Conv": {1: "weight", 2: "bias"}, "Gemm": {1: "weight", 2: "bias"}, "MatMul": {1: "weight"}}


def read_onnx(path: Path) -> Graph:
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    try:
        model = onnx.load(str(path))
        model = onnx.shape_inference.infer_shapes(model)
    except (
        DecodeError,
        ValueError,
        OSError,
        onnx.onnx_cpp2py_export.shape_inference.InferenceError,
    ) as error:
        raise ModelFormatError(f"{path}: not a readable ONNX model ({error})") from error
    if not model.graph.node:
        raise ModelFormatError(f"{path}: ONNX model has no nodes")
    return _Builder(path, model).build()


class _Builder:
    def __init__(self, path: Path, model) -> None:
        import onnx

        self.path = path
        graph = model.graph
        self.nodes = list(graph.node)
        self.initializers = {init.name: init for init in graph.initializer}
        self.types: dict[str, tuple[tuple[int, ...], str]] = {}
        for info in [*graph.input, *graph.output, *graph.value_info]:
            tensor_type = info.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
            self.types[info.name] = (dims, onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name)
        for init in graph.initializer:
            self.types[init.name] = (
                tuple(init.dims),
                onnx.helper.tensor_dtype_to_np_dtype(init.data_type).name,
            )
        self.producer = {out: node for node in self.nodes for out in node.output}
        self.consumers: dict[str, list] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.graph_inputs = [i.name for i in graph.input if i.name not in self.initializers]
        self.graph_outputs = [o.name for o in graph.output]
        self.alias: dict[str, str] = {}  # tensor name -> the tensor it stands for
        self.nchw: set[str] = set()
        self.tensors: list[Tensor] = []
        self.index: dict[str, int] = {}

    # -- classification ---------------------------------------------------------------------------------------
    def _is_const(self, name: str) -> bool:
        node = self.producer.get(name)
        if name in self.initializers:
            return True
        return node is not None and node.op_type == "DequantizeLinear" and node.input[0] in self.initializers

    def _quantized_node(self, node) -> bool:
        """An int8 op: every activation input arrives through DequantizeLinear."""
        acts = [n for n in node.input if n and not self._is_const(n)]
        return bool(acts) and all(
            self.producer.get(n) is not None and self.producer[n].op_type == "DequantizeLinear" for n in acts
        )

    def _resolve_aliases(self) -> set[int]:
        """Fold Q/DQ pairs; return ids of the Q/DQ nodes that vanish."""
        folded: set[int] = set()
        for node in self.nodes:
            if node.op_type == "DequantizeLinear":
                if node.input[0] in self.initializers:
                    self.alias[node.output[0]] = node.input[0]
                    folded.add(id(node))
                elif all(
                    c.op_type in _OPS or c.op_type == "Conv" for c in self.consumers.get(node.output[0], [])
                ):
                    users = self.consumers.get(node.output[0], [])
                    if users and all(self._quantized_node(u) and self._output_quantized(u) for u in users):
                        self.alias[node.output[0]] = node.input[0]
                        folded.add(id(node))
            elif node.op_type == "QuantizeLinear":
                source = node.input[0]
                producer = self.producer.get(source)
                if (
                    producer is not None
                    and producer.op_type not in ("QuantizeLinear", "DequantizeLinear")
                    and len(self.consumers.get(source, [])) == 1
                    and source not in self.graph_outputs
                    and self._quantized_node(producer)
                ):
                    self.alias[source] = node.output[0]
                    folded.add(id(node))
        return folded

    def _output_quantized(self, node) -> bool:
        users = self.consumers.get(node.output[0], []) if node.output else []
        return bool(users) and all(u.op_type == "QuantizeLinear" for u in users)

    def _final(self, name: str) -> str:
        seen = set()
        while name in self.alias and name not in seen:
            seen.add(name)
            name = self.alias[name]
        return name

    def _mark_layouts(self) -> None:
        """NCHW tensors: inputs/outputs of layout ops, spread through element-wise ops and Q/DQ."""
        for node in self.nodes:
            if node.op_type in _LAYOUT_OPS:
                self.nchw.update(self._final(n) for n in [node.input[0], *node.output])
        changed = True
        while changed:
            changed = False
            for node in self.nodes:
                if node.op_type not in _PASS_LAYOUT:
                    continue
                names = {
                    self._final(n) for n in [*node.input[:1], *node.output] if n and not self._is_const(n)
                }
                if names & self.nchw and not names <= self.nchw:
                    self.nchw |= names
                    changed = True

    # -- tensors ----------------------------------------------------------------------------------------------
    def _tensor(self, name: str, constant: bool = False, role: str = "activation") -> int:
        name = self._final(name)
        if name in self.index:
            if constant and role in ("weight", "bias"):
                self.tensors[self.index[name]].role = role
            return self.index[name]
        if name not in self.types:
            raise ModelFormatError(f"{self.path}: no shape for tensor '{name}' (run shape inference first)")
        shape, dtype = self.types[name]
        if any(d <= 0 for d in shape):
            raise ModelFormatError(f"{self.path}: tensor '{name}' has a dynamic shape {shape}")
        if len(shape) == 4 and name in self.nchw:
            shape = (shape[0], shape[2], shape[3], shape[1])
        if constant and role == "bias" and DTYPE_SIZES.get(dtype, 4) != 4:
            dtype = "int32"
        tensor = Tensor(len(self.tensors), name, shape, dtype if dtype in DTYPE_SIZES else "float32", constant,
                        role if constant else "activation")  # fmt: skip
        if constant:
            tensor.quant_channels = self._quant_channels(name)
        self.tensors.append(tensor)
        self.index[name] = tensor.index
        return tensor.index

    def _quant_channels(self, name: str) -> int:
        for node in self.consumers.get(name, []):
            if node.op_type == "DequantizeLinear" and node.input[0] == name and len(node.input) > 1:
                scale = self.initializers.get(node.input[1])
                return int(np.prod(scale.dims)) if scale is not None and scale.dims else 1
        return 0

    # -- ops --------------------------------------------------------------------------------------------------
    def build(self) -> Graph:
        folded = self._resolve_aliases()
        self._mark_layouts()
        inputs = [self._tensor(name) for name in self.graph_inputs]
        ops: list[Op] = []
        for node in self.nodes:
            if id(node) in folded:
                continue
            acts = [n for n in node.input if n and not self._is_const(n)]
            if not acts and node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
                continue  # constant sub-expression
            ops.append(self._op(node, len(ops)))
        outputs = [self._tensor(name) for name in self.graph_outputs]
        return Graph(
            path=self.path, format="onnx", tensors=self.tensors, ops=ops, inputs=inputs, outputs=outputs
        )

    def _op(self, node, index: int) -> Op:
        kind = node.op_type
        slots = _WEIGHT_SLOTS.get(kind, {})
        input_ids = []
        for slot, name in enumerate(node.input):
            if not name:
                continue
            if self._is_const(name):
                if kind in ("QuantizeLinear", "DequantizeLinear") and slot > 0:
                    continue  # scales and zero points
                role = slots.get(slot, "weight" if kind in ("Add", "Sub", "Mul") else "other")
                input_ids.append(self._tensor(name, constant=True, role=role))
            else:
                input_ids.append(self._tensor(name))
        output_ids = [self._tensor(name) for name in node.output if name]
        op = Op(index=index, op=_OPS.get(kind, f"ONNX:{kind}"), name=node.name or node.output[0],
                inputs=input_ids, outputs=output_ids)  # fmt: skip
        if kind == "Conv":
            self._conv(node, op)
        elif kind in ("AveragePool", "MaxPool"):
            self._window(node, op, tuple(self._attr(node, "kernel_shape")))
        elif kind == "MatMul" and not self._is_const(node.input[1]):
            op.op = "ONNX:MatMul(activation x activation)"
        return op

    @staticmethod
    def _attr(node, name: str, default=None):
        import onnx

        for attribute in node.attribute:
            if attribute.name == name:
                return onnx.helper.get_attribute_value(attribute)
        return default

    def _conv(self, node, op: Op) -> None:
        weight_shape = self.types[self._final(node.input[1])][0]  # [C_out, C_in / group, kh, kw]
        group = int(self._attr(node, "group", 1))
        c_in = self.tensors[op.inputs[0]].shape[-1]
        if group > 1 and group == c_in and weight_shape[1] == 1:
            op.op = "DEPTHWISE_CONV_2D"
        else:
            op.op = "CONV_2D"
            if group > 1:
                op.attrs["groups"] = group
        self._window(node, op, tuple(self._attr(node, "kernel_shape", weight_shape[2:])))

    def _window(self, node, op: Op, kernel: tuple[int, ...]) -> None:
        if len(kernel) != 2:
            op.op = f"ONNX:{node.op_type}{len(kernel)}d"
            return
        strides = tuple(self._attr(node, "strides", (1, 1)))
        dilations = tuple(self._attr(node, "dilations", (1, 1)))
        auto_pad = self._attr(node, "auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        source = self.tensors[op.inputs[0]]
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            top, bottom = same_padding(source.shape[1], kernel[0], strides[0], dilations[0])
            left, _ = same_padding(source.shape[2], kernel[1], strides[1], dilations[1])
            if auto_pad == "SAME_LOWER":
                top, left = bottom, left
        else:
            pads = tuple(self._attr(node, "pads", (0, 0, 0, 0)))
            top, left = pads[0], pads[1]
        op.attrs.update(kernel=kernel, stride=strides, dilation=dilations, pad_top=top, pad_left=left,
                        padding="EXPLICIT")  # fmt: skip
