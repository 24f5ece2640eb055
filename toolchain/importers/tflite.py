"""TFLite flatbuffer -> IR, on the schema classes of the `tflite` package (TensorFlow's schema)."""
from __future__ import annotations

import numpy as np
import tflite

from ..errors import UserError
from ..ir import Graph, Op, QuantParams, Tensor
from ..ops import DEFINITIONS
from ..ops.base import REQUIRED

TENSOR_TYPES = {
    tflite.TensorType.FLOAT32: "float32", tflite.TensorType.INT32: "int32",
    tflite.TensorType.UINT8: "uint8", tflite.TensorType.INT64: "int64",
    tflite.TensorType.INT16: "int16", tflite.TensorType.INT8: "int8",
}
OPERATOR_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
ACTIVATIONS = {
    tflite.ActivationFunctionType.NONE: None, tflite.ActivationFunctionType.RELU: "relu",
    tflite.ActivationFunctionType.RELU6: "relu6",
    tflite.ActivationFunctionType.RELU_N1_TO_1: "relu_n1_to_1",
}
PADDINGS = {tflite.Padding.SAME: "same", tflite.Padding.VALID: "valid"}


def _options(op, name):
    """The op's options table of TensorFlow's schema class `name`, or None when the file has none."""
    table = op.BuiltinOptions()
    if table is None:
        return None
    options = getattr(tflite, name)()
    options.Init(table.Bytes, table.Pos)
    return options


def _decode(value, kind: str, where: str):
    if kind == "padding":
        return PADDINGS[value]
    if kind == "activation":
        if value not in ACTIVATIONS:
            raise UserError(f"{where}: unsupported fused activation (code {value})")
        return ACTIVATIONS[value]
    return {"bool": bool, "float": float}.get(kind, lambda v: v)(value)


def read_attrs(op, binding, where) -> dict:
    """The op's attributes from its options table (binding: the op definition's TFLite fields);
    a field without a default needs the table."""
    options = _options(op, binding.options) if binding.fields else None
    attrs = {}
    for attr, field in binding.fields.items():
        if options is None and field.default is not REQUIRED:
            attrs[attr] = field.default
            continue
        names = (field.names,) if isinstance(field.names, str) else field.names
        values = tuple(_decode(getattr(options, name)(), field.kind, where) for name in names)
        attrs[attr] = values[0] if isinstance(field.names, str) else values
    return attrs


# TFLite builtin -> the op definition that reads it
BUILTINS = {builtin: d for d in DEFINITIONS for builtin in d.tflite.builtins}


def import_tflite(data: bytes, source: str = "model") -> Graph:
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() < 1:
            raise UserError(f"{source}: TFLite model has no subgraph")
        return _import_subgraph(model, data, source)
    except UserError:
        raise
    except Exception as exc:  # the flatbuffer reader fails in many ways on bad bytes
        raise UserError(f"{source}: corrupt or truncated TFLite file ({type(exc).__name__})") from None


def _tensor_name(t, index, taken):
    raw = t.Name()
    name = raw.decode("utf-8", "replace") if raw else f"tensor_{index}"
    return name if name not in taken else f"{name}#{index}"


def _read_tensor(model, data, t, index, name, source):
    if t.Type() not in TENSOR_TYPES:
        raise UserError(f"{source}: tensor {index} ('{name}') has unsupported type code {t.Type()}")
    dtype = TENSOR_TYPES[t.Type()]
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    signature = t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength() else None
    if signature is not None and any(int(d) < 0 for d in signature[1:]):
        raise UserError(f"{source}: tensor '{name}' has a dynamic shape {list(signature)}")
    if any(d <= 0 for d in shape):
        raise UserError(f"{source}: tensor '{name}' has an empty or dynamic shape {list(shape)}")
    array = None
    buffer = model.Buffers(t.Buffer()) if t.Buffer() < model.BuffersLength() else None
    if buffer is not None and buffer.DataLength() > 0:
        raw = buffer.DataAsNumpy().tobytes()
        expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if len(raw) != expected:
            raise UserError(f"{source}: corrupt or truncated TFLite file (constant '{name}' has "
                            f"{len(raw)} bytes, shape needs {expected})")
        array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    elif buffer is not None and buffer.Offset() > 1:
        start, size = buffer.Offset(), buffer.Size()
        if start + size > len(data):
            raise UserError(f"{source}: corrupt or truncated TFLite file (buffer past end of file)")
        array = np.frombuffer(data[start:start + size], dtype=dtype).reshape(shape).copy()
    quant = None
    q = t.Quantization()
    if q is not None and q.ScaleLength() > 0:
        scale = q.ScaleAsNumpy().astype(np.float32)
        zero_point = (q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength()
                      else np.zeros(scale.shape, np.int64))
        axis = int(q.QuantizedDimension()) if scale.size > 1 else None
        quant = QuantParams(scale=scale, zero_point=zero_point, axis=axis)
    return Tensor(name=name, shape=shape, dtype=dtype, data=array, quant=quant)


def _import_subgraph(model, data, source) -> Graph:
    sub = model.Subgraphs(0)
    tensors, names = {}, []
    for i in range(sub.TensorsLength()):
        t = sub.Tensors(i)
        name = _tensor_name(t, i, tensors)
        tensors[name] = _read_tensor(model, data, t, i, name, source)
        names.append(name)
    unsupported = []
    ops = []
    for index in range(sub.OperatorsLength()):
        op = sub.Operators(index)
        code_table = model.OperatorCodes(op.OpcodeIndex())
        code = max(code_table.BuiltinCode(), code_table.DeprecatedBuiltinCode())
        op_name = OPERATOR_NAMES.get(code, f"builtin code {code}")
        if op_name == "CUSTOM":
            op_name = f"CUSTOM ({code_table.CustomCode().decode('utf-8', 'replace')})"
        if op_name not in BUILTINS:
            unsupported.append(f"{op_name} at position {index}")
            continue
        inputs = [names[i] if i >= 0 else None for i in op.InputsAsNumpy()]
        outputs = [names[i] for i in op.OutputsAsNumpy()]
        where = f"{source}: op {index} ({op_name})"
        definition = BUILTINS[op_name]
        binding = definition.tflite
        attrs = read_attrs(op, binding, where)
        if binding.read_params is not None:
            attrs.update(binding.read_params(
                op_name, inputs, lambda position, what: _const_input(inputs, position, tensors, where, what)))
        kept = inputs if binding.data_inputs is None else inputs[:binding.data_inputs]
        ops.append(Op(kind=definition.kind, inputs=[n for n in kept if n is not None], outputs=outputs,
                      attrs=attrs, name=f"{index}:{op_name}"))
    if unsupported:
        raise UserError(f"{source}: unsupported op{'s' if len(unsupported) > 1 else ''}: "
                        + ", ".join(unsupported))
    graph_inputs = [names[i] for i in sub.InputsAsNumpy()]
    graph_outputs = [names[i] for i in sub.OutputsAsNumpy()]
    used = set(graph_inputs) | set(graph_outputs)
    for op in ops:
        used.update(op.inputs)
        used.update(op.outputs)
    tensors = {n: t for n, t in tensors.items() if n in used}
    for name in graph_inputs:
        if tensors[name].is_const:
            raise UserError(f"{source}: graph input '{name}' is a constant")
    return Graph(tensors=tensors, ops=ops, inputs=graph_inputs, outputs=graph_outputs)


def _const_input(inputs, position, tensors, where, what):
    name = inputs[position] if len(inputs) > position else None
    if name is None or not tensors[name].is_const:
        raise UserError(f"{where}: {what} must be a constant tensor")
    return tensors[name].data
