"""Read a .tflite flatbuffer into the estimator's Graph with the LiteRT schema bindings (no interpreter)."""

from __future__ import annotations

from pathlib import Path

from ai_edge_litert import schema_py_generated as schema

from aed.footprint.graph import Graph, ModelFormatError, Op, Tensor, same_padding

_OP_NAMES = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
_TYPE_NAMES = {
    value: name.lower() for name, value in vars(schema.TensorType).items() if not name.startswith("_")
}
# Constant inputs that hold biases (int32 after quantization) rather than weights.
_BIAS_SLOT = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3}


def read_tflite(path: Path) -> Graph:
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFormatError(f"{path}: not a TFLite flatbuffer (no 'TFL3' identifier)")
    try:
        model = schema.Model.GetRootAs(data, 0)
        if model.SubgraphsLength() < 1:
            raise ModelFormatError(f"{path}: TFLite model has no subgraph")
        subgraph = model.Subgraphs(0)
        tensors = _read_tensors(path, model, subgraph)
        ops = _read_ops(path, model, subgraph, tensors)
        inputs = [int(i) for i in subgraph.InputsAsNumpy()]
        outputs = [int(i) for i in subgraph.OutputsAsNumpy()]
    except (IndexError, ValueError, TypeError, AttributeError) as error:
        if isinstance(error, ModelFormatError):
            raise
        raise ModelFormatError(f"{path}: corrupt TFLite flatbuffer ({error})") from error
    for index in inputs:
        tensors[index].is_constant = False
        tensors[index].role = "activation"
    return Graph(path=path, format="tflite", tensors=tensors, ops=ops, inputs=inputs, outputs=outputs)


def _read_tensors(path: Path, model: schema.Model, subgraph: schema.SubGraph) -> list[Tensor]:
    tensors = []
    for index in range(subgraph.TensorsLength()):
        raw = subgraph.Tensors(index)
        shape = tuple(int(d) for d in raw.ShapeAsNumpy()) if raw.ShapeLength() else ()
        name = raw.Name().decode(errors="replace") if raw.Name() else f"tensor_{index}"
        if any(d <= 0 for d in shape):
            raise ModelFormatError(f"{path}: tensor '{name}' has a dynamic or empty shape {shape}")
        buffer_id = raw.Buffer()
        constant = False
        if 0 < buffer_id < model.BuffersLength():
            buffer = model.Buffers(buffer_id)
            constant = (
                buffer.DataLength() > 0 or buffer.Size() > 0
            )  # Size(): data stored after the flatbuffer
        quant = raw.Quantization()
        channels = quant.ScaleLength() if quant is not None else 0
        tensors.append(
            Tensor(
                index=index,
                name=name,
                shape=shape,
                dtype=_TYPE_NAMES.get(raw.Type(), f"type{raw.Type()}"),
                is_constant=constant,
                role="other" if constant else "activation",
                quant_channels=channels,
                buffer_id=buffer_id,
            )
        )
    return tensors


def _read_ops(path: Path, model: schema.Model, subgraph: schema.SubGraph, tensors: list[Tensor]) -> list[Op]:
    ops = []
    for index in range(subgraph.OperatorsLength()):
        raw = subgraph.Operators(index)
        code = model.OperatorCodes(raw.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = _OP_NAMES.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            name = f"CUSTOM:{(code.CustomCode() or b'?').decode(errors='replace')}"
        inputs = [int(i) for i in raw.InputsAsNumpy()] if raw.InputsLength() else []
        outputs = [int(i) for i in raw.OutputsAsNumpy()] if raw.OutputsLength() else []
        op = Op(
            index=index,
            op=name,
            name=tensors[outputs[0]].name if outputs else name,
            inputs=inputs,
            outputs=outputs,
        )
        _mark_constant_roles(op, tensors)
        op.attrs = _attributes(op, raw, tensors)
        ops.append(op)
    return ops


def _mark_constant_roles(op: Op, tensors: list[Tensor]) -> None:
    bias_slot = _BIAS_SLOT.get(op.op)
    for slot, index in enumerate(op.inputs):
        if index < 0 or not tensors[index].is_constant:
            continue
        tensor = tensors[index]
        if slot == bias_slot:
            tensor.role = "bias"
        elif op.op in _BIAS_SLOT and slot == 1:
            tensor.role = "weight"
        elif op.op in ("ADD", "MUL", "SUB") and tensor.elements > 1:
            tensor.role = "weight"  # a constant operand (e.g. a folded scale) is stored like a weight


def _attributes(op: Op, raw: schema.Operator, tensors: list[Tensor]) -> dict:
    table = raw.BuiltinOptions()
    if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        options = schema.Conv2DOptions() if op.op == "CONV_2D" else schema.DepthwiseConv2DOptions()
        options.Init(table.Bytes, table.Pos)
        weights = tensors[op.inputs[1]].shape  # CONV: [Cout, kh, kw, Cin]; DEPTHWISE: [1, kh, kw, C]
        kernel = (weights[1], weights[2])
        dilation = (options.DilationHFactor(), options.DilationWFactor())
        attrs = {"kernel": kernel, "stride": (options.StrideH(), options.StrideW()), "dilation": dilation}
        if op.op == "CONV_2D" and weights[3] != tensors[op.inputs[0]].shape[-1]:
            attrs["groups"] = tensors[op.inputs[0]].shape[-1] // weights[3]
        return _with_padding(attrs, options.Padding(), tensors[op.inputs[0]])
    if op.op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        options = schema.Pool2DOptions()
        options.Init(table.Bytes, table.Pos)
        attrs = {
            "kernel": (options.FilterHeight(), options.FilterWidth()),
            "stride": (options.StrideH(), options.StrideW()),
            "dilation": (1, 1),
        }
        return _with_padding(attrs, options.Padding(), tensors[op.inputs[0]])
    return {}


def _with_padding(attrs: dict, padding: int, source: Tensor) -> dict:
    if padding == schema.Padding.SAME:
        top, _ = same_padding(source.shape[1], attrs["kernel"][0], attrs["stride"][0], attrs["dilation"][0])
        left, _ = same_padding(source.shape[2], attrs["kernel"][1], attrs["stride"][1], attrs["dilation"][1])
    else:
        top = left = 0
    attrs.update(pad_top=top, pad_left=left, padding="SAME" if padding == schema.Padding.SAME else "VALID")
    return attrs
