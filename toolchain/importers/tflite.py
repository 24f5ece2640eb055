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


def _options(op, cls, where, required=True):
    """The op's options table, checked to be of the kind the op takes (a table of another kind
    read through `cls` would give that table's bytes as these fields)."""
    table = op.BuiltinOptions()
    if table is None:
        if required:
            raise UserError(f"{where}: has no {cls.__name__}")
        return None
    code = getattr(tflite.BuiltinOptions, cls.__name__)
    if op.BuiltinOptionsType() != code:
        raise UserError(f"{where}: its options are of type code {op.BuiltinOptionsType()}, "
                        f"not {cls.__name__} ({code})")
    options = cls()
    options.Init(table.Bytes, table.Pos)
    return options


def _activation(options, where):
    code = options.FusedActivationFunction() if options is not None else 0
    if code not in ACTIVATIONS:
        raise UserError(f"{where}: unsupported fused activation (code {code})")
    return ACTIVATIONS[code]


def _padding(options, where):
    if options.Padding() not in PADDINGS:
        raise UserError(f"{where}: padding code {options.Padding()} is neither SAME nor VALID")
    return PADDINGS[options.Padding()]


def _conv_attrs(op, where):
    o = _options(op, tflite.Conv2DOptions, where)
    return {"stride": (o.StrideH(), o.StrideW()), "padding": _padding(o, where),
            "dilation": (o.DilationHFactor(), o.DilationWFactor()),
            "activation": _activation(o, where)}


def _depthwise_attrs(op, where):
    o = _options(op, tflite.DepthwiseConv2DOptions, where)
    return {"stride": (o.StrideH(), o.StrideW()), "padding": _padding(o, where),
            "dilation": (o.DilationHFactor(), o.DilationWFactor()),
            "activation": _activation(o, where)}


def _pool_attrs(op, where):
    o = _options(op, tflite.Pool2DOptions, where)
    return {"filter": (o.FilterHeight(), o.FilterWidth()), "stride": (o.StrideH(), o.StrideW()),
            "padding": _padding(o, where), "activation": _activation(o, where)}


def _activation_only(cls):
    return lambda op, where: {"activation": _activation(_options(op, cls, where, required=False), where)}


def _softmax_attrs(op, where):
    o = _options(op, tflite.SoftmaxOptions, where, required=False)
    return {"beta": float(o.Beta()) if o is not None else 1.0}


def _concat_attrs(op, where):
    o = _options(op, tflite.ConcatenationOptions, where)
    return {"axis": o.Axis(), "activation": _activation(o, where)}


def _mean_attrs(op, where):
    o = _options(op, tflite.ReducerOptions, where, required=False)
    return {"keep_dims": bool(o.KeepDims()) if o is not None else False}


def _no_attrs(op, where):
    return {}


# TFLite builtin -> (IR kind, attribute reader, number of leading data inputs kept as op inputs).
# Parameter inputs beyond those (axes, paddings, perm, shape) become attributes below.
BUILTINS = {
    "CONV_2D": ("conv2d", _conv_attrs, 3),
    "DEPTHWISE_CONV_2D": ("depthwise_conv2d", _depthwise_attrs, 3),
    "FULLY_CONNECTED": ("fully_connected", _activation_only(tflite.FullyConnectedOptions), 3),
    "ADD": ("add", _activation_only(tflite.AddOptions), 2),
    "MUL": ("mul", _activation_only(tflite.MulOptions), 2),
    "AVERAGE_POOL_2D": ("avg_pool2d", _pool_attrs, 1),
    "MAX_POOL_2D": ("max_pool2d", _pool_attrs, 1),
    "MEAN": ("mean", _mean_attrs, 1),
    "PAD": ("pad", _no_attrs, 1),
    "PADV2": ("pad", _no_attrs, 1),
    "RESHAPE": ("reshape", _no_attrs, 1),
    "SQUEEZE": ("reshape", _no_attrs, 1),
    "EXPAND_DIMS": ("reshape", _no_attrs, 1),
    "TRANSPOSE": ("transpose", _no_attrs, 1),
    "CONCATENATION": ("concat", _concat_attrs, None),
    "SOFTMAX": ("softmax", _softmax_attrs, 1),
    "QUANTIZE": ("quantize", _no_attrs, 1),
    "DEQUANTIZE": ("dequantize", _no_attrs, 1),
    "RELU": ("relu", _no_attrs, 1),
    "RELU6": ("relu6", _no_attrs, 1),
}


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
        kind, read_attrs, n_data = BUILTINS[op_name]
        attrs = read_attrs(op, where)
        attrs.update(_parameter_inputs(op_name, inputs, tensors, where))
        kept = inputs if n_data is None else inputs[:n_data]
        ops.append(Op(kind=kind, inputs=[n for n in kept if n is not None], outputs=outputs,
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


def _parameter_inputs(op_name, inputs, tensors, where) -> dict:
    """Turn the constant parameter inputs of shape-manipulating ops into attributes."""
    if op_name == "MEAN":
        return {"axes": tuple(int(a) for a in _const_input(inputs, 1, tensors, where, "axes").reshape(-1))}
    if op_name in ("PAD", "PADV2"):
        paddings = _const_input(inputs, 1, tensors, where, "paddings")
        if paddings.size % 2:
            raise UserError(f"{where}: paddings must be (before, after) pairs, got {paddings.size} values")
        paddings = paddings.reshape(-1, 2)
        attrs = {"paddings": tuple((int(a), int(b)) for a, b in paddings)}
        if op_name == "PADV2" and len(inputs) > 2 and inputs[2] is not None:
            value = _const_input(inputs, 2, tensors, where, "pad value")
            if value.size != 1:
                raise UserError(f"{where}: the pad value must be one number, got {value.size}")
            attrs["pad_value"] = int(value.reshape(-1)[0])
        return attrs
    if op_name == "TRANSPOSE":
        return {"perm": tuple(int(a) for a in _const_input(inputs, 1, tensors, where, "perm").reshape(-1))}
    return {}
