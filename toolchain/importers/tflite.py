"""TFLite flatbuffer -> IR, on the schema classes of the `tflite` package (TensorFlow's schema).

The buffer is walked with bounds checks first (flatbuffer_check); then every fact the IR takes
from it is checked as it is read: tensor types, shapes and sizes against the read policy, buffer
sizes against shapes, quantization parameters, operator codes, tensor indices and option tables.
"""
from __future__ import annotations

import math

import numpy as np
import tflite

from ..errors import UserError, quoted
from ..ir import Graph, Op, QuantParams, Tensor
from ..ops import DEFINITIONS
from ..ops.base import REQUIRED
from ..read_policy import DEFAULT_POLICY, ReadPolicy
from .flatbuffer_check import FlatbufferError, verify_tflite

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


def _options(op, name, where, required):
    """The op's options table of TensorFlow's schema class `name`, checked to be of the kind the op
    takes (a table of another kind read through it would give that table's bytes as these fields);
    None when the file has none and none is required."""
    table = op.BuiltinOptions()
    if table is None:
        if required:
            raise UserError(f"{where}: has no {name}")
        return None
    code = getattr(tflite.BuiltinOptions, name)
    if op.BuiltinOptionsType() != code:
        raise UserError(f"{where}: its options are of type code {op.BuiltinOptionsType()}, not {name} ({code})")
    options = getattr(tflite, name)()
    options.Init(table.Bytes, table.Pos)
    return options


def _decode(value, kind: str, where: str):
    if kind == "padding":
        if value not in PADDINGS:
            raise UserError(f"{where}: padding code {value} is neither SAME nor VALID")
        return PADDINGS[value]
    if kind == "activation":
        if value not in ACTIVATIONS:
            raise UserError(f"{where}: unsupported fused activation (code {value})")
        return ACTIVATIONS[value]
    return {"bool": bool, "float": float}.get(kind, lambda v: v)(value)


def read_attrs(op, binding, where) -> dict:
    """The op's attributes from its options table (binding: the op definition's TFLite fields); a
    field without a default needs the table."""
    if not binding.fields:
        return {}
    required = any(f.default is REQUIRED for f in binding.fields.values())
    options = _options(op, binding.options, where, required)
    attrs = {}
    for attr, field in binding.fields.items():
        if options is None:
            attrs[attr] = field.default
            continue
        names = (field.names,) if isinstance(field.names, str) else field.names
        values = tuple(_decode(getattr(options, name)(), field.kind, where) for name in names)
        attrs[attr] = values[0] if isinstance(field.names, str) else values
    return attrs


# TFLite builtin -> the op definition that reads it
BUILTINS = {builtin: d for d in DEFINITIONS for builtin in d.tflite.builtins}


def import_tflite(data: bytes, source: str = "model", policy: ReadPolicy = DEFAULT_POLICY) -> Graph:
    try:
        verify_tflite(data)
    except FlatbufferError as exc:
        raise UserError(f"{source}: corrupt or truncated TFLite file ({exc})") from None
    model = tflite.Model.GetRootAsModel(data, 0)
    if model.SubgraphsLength() < 1:
        raise UserError(f"{source}: TFLite model has no subgraph")
    return _import_subgraph(model, data, source, policy)


def _tensor_name(t, index, taken):
    raw = t.Name()
    name = raw.decode("utf-8", "replace") if raw else f"tensor_{index}"
    return name if name not in taken else f"{name}#{index}"


def _tensor_data(model, data, t, shape, dtype, name, source):
    """The constant's values, or None for an activation (buffer 0, or an empty buffer)."""
    if t.Buffer() >= model.BuffersLength():
        raise UserError(f"{source}: tensor {quoted(name)} refers to buffer {t.Buffer()}, "
                        f"the file has {model.BuffersLength()}")
    buffer = model.Buffers(t.Buffer())
    expected = math.prod(shape) * np.dtype(dtype).itemsize
    if buffer.DataLength() > 0:
        raw = buffer.DataAsNumpy().tobytes()
    elif buffer.Offset() > 1:   # a large model keeps its buffers after the flatbuffer
        start, size = buffer.Offset(), buffer.Size()
        if start + size > len(data):
            raise UserError(f"{source}: corrupt or truncated TFLite file (buffer of {quoted(name)} "
                            f"ends at byte {start + size:,}, past the end of the file)")
        raw = data[start:start + size]
    else:
        return None
    if len(raw) != expected:
        raise UserError(f"{source}: corrupt or truncated TFLite file (constant {quoted(name)} has "
                        f"{len(raw)} bytes, shape {list(shape)} needs {expected})")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _quantization(t, shape, dtype, name, source):
    q = t.Quantization()
    if q is None or q.ScaleLength() == 0:
        return None
    scale = q.ScaleAsNumpy().astype(np.float32)
    zero_point = q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength() else np.zeros(scale.shape, np.int64)
    where = f"{source}: tensor {quoted(name)}"
    if zero_point.size != scale.size:
        raise UserError(f"{where}: {scale.size} quantization scales but {zero_point.size} zero points")
    axis = None
    if scale.size > 1:
        axis = int(q.QuantizedDimension())
        if not 0 <= axis < len(shape) or shape[axis] != scale.size:
            raise UserError(f"{where}: {scale.size} per-channel scales on axis {axis} of shape {list(shape)}")
    return QuantParams(scale=scale, zero_point=zero_point, axis=axis)


def _read_tensor(model, data, t, index, name, source, policy):
    if t.Type() not in TENSOR_TYPES:
        raise UserError(f"{source}: tensor {index} ({quoted(name)}) has unsupported type code {t.Type()}")
    dtype = TENSOR_TYPES[t.Type()]
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    signature = t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength() else None
    if signature is not None and any(int(d) < 0 for d in signature[1:]):
        raise UserError(f"{source}: tensor {quoted(name)} has a dynamic shape {list(signature)}")
    if any(d <= 0 for d in shape):
        raise UserError(f"{source}: tensor {quoted(name)} has an empty or dynamic shape {list(shape)}")
    policy.check_tensor_bytes(math.prod(shape) * np.dtype(dtype).itemsize,
                              f"{source}: tensor {quoted(name)} of shape {list(shape)}")
    if t.Sparsity() is not None:
        raise UserError(f"{source}: tensor {quoted(name)} is sparse (tinydeploy reads dense tensors)")
    return Tensor(name=name, shape=shape, dtype=dtype, data=_tensor_data(model, data, t, shape, dtype, name, source),
                  quant=_quantization(t, shape, dtype, name, source))


def _indices(vector, count, source, what, optional=False):
    """Tensor indices from the file, each checked to name a tensor (-1: an omitted optional input)."""
    indices = [int(i) for i in vector]
    for i in indices:
        if not (0 <= i < count or (optional and i == -1)):
            raise UserError(f"{source}: {what} refers to tensor {i}, the subgraph has {count}")
    return indices


def _op_name(model, op, index, source):
    if op.OpcodeIndex() >= model.OperatorCodesLength():
        raise UserError(f"{source}: op {index} has operator code index {op.OpcodeIndex()}, "
                        f"the file has {model.OperatorCodesLength()}")
    code_table = model.OperatorCodes(op.OpcodeIndex())
    code = max(code_table.BuiltinCode(), code_table.DeprecatedBuiltinCode())
    op_name = OPERATOR_NAMES.get(code, f"builtin code {code}")
    if op_name == "CUSTOM":
        op_name = f"CUSTOM ({quoted((code_table.CustomCode() or b'').decode('utf-8', 'replace'))})"
    return op_name


def _import_subgraph(model, data, source, policy) -> Graph:
    sub = model.Subgraphs(0)
    tensors, names, total = {}, [], 0
    for i in range(sub.TensorsLength()):
        t = sub.Tensors(i)
        name = _tensor_name(t, i, tensors)
        tensors[name] = _read_tensor(model, data, t, i, name, source, policy)
        names.append(name)
        total += tensors[name].nbytes
        policy.check_tensor_bytes(total, f"{source}: the model's tensors")
    unsupported = []
    ops = []
    for index in range(sub.OperatorsLength()):
        op = sub.Operators(index)
        op_name = _op_name(model, op, index, source)
        if op_name not in BUILTINS:
            unsupported.append(f"{op_name} at position {index}")
            continue
        where = f"{source}: op {index} ({op_name})"
        inputs = [names[i] if i >= 0 else None
                  for i in _indices(op.InputsAsNumpy() if op.InputsLength() else [], len(names), source,
                                    f"op {index} ({op_name}) input", optional=True)]
        outputs = [names[i] for i in _indices(op.OutputsAsNumpy() if op.OutputsLength() else [], len(names),
                                              source, f"op {index} ({op_name}) output")]
        definition = BUILTINS[op_name]
        binding = definition.tflite
        attrs = read_attrs(op, binding, where)
        if binding.read_params is not None:
            attrs.update(binding.read_params(op_name, inputs, lambda position, what, integer=True: _const_input(
                inputs, position, tensors, where, what, integer), where))
        kept = inputs if binding.data_inputs is None else inputs[:binding.data_inputs]
        ops.append(Op(kind=definition.kind, inputs=[n for n in kept if n is not None], outputs=outputs,
                      attrs=attrs, name=f"{index}:{op_name}"))
    if unsupported:
        raise UserError(f"{source}: unsupported op{'s' if len(unsupported) > 1 else ''}: "
                        + ", ".join(unsupported))
    graph_inputs = [names[i] for i in _indices(sub.InputsAsNumpy() if sub.InputsLength() else [], len(names),
                                               source, "a graph input")]
    graph_outputs = [names[i] for i in _indices(sub.OutputsAsNumpy() if sub.OutputsLength() else [], len(names),
                                                source, "a graph output")]
    used = set(graph_inputs) | set(graph_outputs)
    for op in ops:
        used.update(op.inputs)
        used.update(op.outputs)
    tensors = {n: t for n, t in tensors.items() if n in used}
    for name in graph_inputs:
        if tensors[name].is_const:
            raise UserError(f"{source}: graph input {quoted(name)} is a constant")
    return Graph(tensors=tensors, ops=ops, inputs=graph_inputs, outputs=graph_outputs)


def _const_input(inputs, position, tensors, where, what, integer=True):
    name = inputs[position] if len(inputs) > position else None
    if name is None or not tensors[name].is_const:
        raise UserError(f"{where}: {what} must be a constant tensor")
    data = tensors[name].data
    if integer and not np.issubdtype(data.dtype, np.integer):
        raise UserError(f"{where}: {what} must be integers, not {data.dtype}")
    return data
