"""TFLite flatbuffer -> IR, on the schema classes of the `tflite` package (TensorFlow's schema)."""
from __future__ import annotations

import numpy as np
import tflite

from ..errors import UserError
from ..ir import Graph, Op, QuantParams, Tensor

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


def _options(op, cls):
    table = op.BuiltinOptions()
    options = cls()
    if table is not None:
        options.Init(table.Bytes, table.Pos)
        return options
    return None


def _activation(options, where):
    code = options.FusedActivationFunction() if options is not None else 0
    if code not in ACTIVATIONS:
        raise UserError(f"{where}: unsupported fused activation (code {code})")
    return ACTIVATIONS[code]


def _conv_attrs(op, where):
    o = _options(op, tflite.Conv2DOptions)
    return {"stride": (o.StrideH(), o.StrideW()), "padding": PADDINGS[o.Padding()],
            "dilation": (o.DilationHFactor(), o.DilationWFactor()),
            "activation": _activation(o, where)}


def _depthwise_attrs(op, where):
    o = _options(op, tflite.DepthwiseConv2DOptions)
    return {"stride": (o.StrideH(), o.StrideW()), "padding": PADDINGS[o.Padding()],
            "dilation": (o.DilationHFactor(), o.DilationWFactor()),
            "activation": _activation(o, where)}


def _pool_attrs(op, where):
    o = _options(op, tflite.Pool2DOptions)
    return {"filter": (o.FilterHeight(), o.FilterWidth()), "stride": (o.StrideH(), o.StrideW()),
            "padding": PADDINGS[o.Padding()], "activation": _activation(o, where)}


def _activation_only(cls):
    return lambda op, where: {"activation": _activation(_options(op, cls), where)}


def _softmax_attrs(op, where):
    o = _options(op, tflite.SoftmaxOptions)
    return {"beta": float(o.Beta()) if o is not None else 1.0}


def _concat_attrs(op, where):
    o = _options(op, tflite.ConcatenationOptions)
    return {"axis": o.Axis(), "activation": _activation(o, where)}


def _mean_attrs(op, where):
    o = _options(op, tflite.ReducerOptions)
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
        kind, read_attrs, n_data = BUILTINS[op_name]
        attrs = read_attrs(op, where)
        attrs.update(_parameter_inputs(op_name, inputs, tensors, where))
        kept = inputs if n_data is None else inputs[:n_data]
        ops.append(Op(kind=kind, inputs=[n for n in kept if n is not None], outputs=outputs,
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


def _parameter_inputs(op_name, inputs, tensors, where) -> dict:
    """Turn the constant parameter inputs of shape-manipulating ops into attributes."""
    if op_name == "MEAN":
        return {"axes": tuple(int(a) for a in _const_input(inputs, 1, tensors, where, "axes").reshape(-1))}
    if op_name in ("PAD", "PADV2"):
        paddings = _const_input(inputs, 1, tensors, where, "paddings").reshape(-1, 2)
        attrs = {"paddings": tuple((int(a), int(b)) for a, b in paddings)}
        if op_name == "PADV2" and len(inputs) > 2 and inputs[2] is not None:
            attrs["pad_value"] = int(_const_input(inputs, 2, tensors, where, "pad value").reshape(-1)[0])
        return attrs
    if op_name == "TRANSPOSE":
        return {"perm": tuple(int(a) for a in _const_input(inputs, 1, tensors, where, "perm").reshape(-1))}
    return {}
