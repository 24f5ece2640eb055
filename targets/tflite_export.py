"""IR -> TFLite flatbuffer, written with TensorFlow's schema (the `tflite` package's generated
builder functions): model_float32.tflite, model_float16.tflite (float16 weights dequantized at
load, as TensorFlow's float16 quantization writes them) and model_int8.tflite, which stores our
quantization exactly (scales as float32, zero points, per-channel axes), so TFLite Micro, LiteRT,
our reference executor and our C read the same numbers.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import flatbuffers
import numpy as np
import tflite

from toolchain.ir import Graph, Op

TENSOR_TYPES = {"float32": tflite.TensorType.FLOAT32, "float16": tflite.TensorType.FLOAT16,
                "int32": tflite.TensorType.INT32, "uint8": tflite.TensorType.UINT8,
                "int64": tflite.TensorType.INT64, "int16": tflite.TensorType.INT16,
                "int8": tflite.TensorType.INT8}
ACTIVATIONS = {None: tflite.ActivationFunctionType.NONE, "relu": tflite.ActivationFunctionType.RELU,
               "relu6": tflite.ActivationFunctionType.RELU6,
               "relu_n1_to_1": tflite.ActivationFunctionType.RELU_N1_TO_1}
PADDINGS = {"same": tflite.Padding.SAME, "valid": tflite.Padding.VALID}

# IR kind -> (TFLite builtin, options table or None, op version for float, for int8): the versions
# TensorFlow's converter writes for these types (TFLM ignores them; LiteRT needs them registered).
BUILTINS = {
    "conv2d": ("CONV_2D", "Conv2DOptions", 1, 3),
    "depthwise_conv2d": ("DEPTHWISE_CONV_2D", "DepthwiseConv2DOptions", 1, 3),
    "fully_connected": ("FULLY_CONNECTED", "FullyConnectedOptions", 1, 4),
    "add": ("ADD", "AddOptions", 1, 2),
    "mul": ("MUL", "MulOptions", 1, 2),
    "avg_pool2d": ("AVERAGE_POOL_2D", "Pool2DOptions", 1, 2),
    "max_pool2d": ("MAX_POOL_2D", "Pool2DOptions", 1, 2),
    "mean": ("MEAN", "ReducerOptions", 1, 2),
    "pad": ("PAD", "PadOptions", 1, 2),
    "reshape": ("RESHAPE", "ReshapeOptions", 1, 1),
    "transpose": ("TRANSPOSE", "TransposeOptions", 1, 2),
    "concat": ("CONCATENATION", "ConcatenationOptions", 1, 2),
    "softmax": ("SOFTMAX", "SoftmaxOptions", 1, 2),
    "quantize": ("QUANTIZE", "QuantizeOptions", 1, 1),
    "dequantize": ("DEQUANTIZE", "DequantizeOptions", 2, 2),
    "relu": ("RELU", None, 1, 2),
    "relu6": ("RELU6", None, 1, 2),
}


@dataclass
class _Tensor:
    name: str
    shape: tuple
    dtype: str
    data: np.ndarray | None = None
    quant: object = None


@dataclass
class _Op:
    kind: str
    inputs: list[int]
    outputs: list[int]
    attrs: dict = field(default_factory=dict)
    int8: bool = False


def _module(name: str):
    return importlib.import_module(f"tflite.{name}")


def _table(b: flatbuffers.Builder, name: str, **fields) -> int:
    """One table of TensorFlow's schema; field values (offsets already built) in the given order."""
    module = _module(name)
    getattr(module, f"{name}Start")(b)
    for key, value in fields.items():
        if value is not None:
            getattr(module, f"{name}Add{key}")(b, value)
    return getattr(module, f"{name}End")(b)


def _offsets(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        b.PrependUOffsetTRelative(offset)
    return b.EndVector()


def _bytes(b: flatbuffers.Builder, raw: bytes, alignment: int = 16) -> int:
    """A byte vector aligned for direct use as tensor data (TFLM reads constants in place)."""
    b.StartVector(1, len(raw), alignment)
    b.head = b.head - len(raw)
    b.Bytes[b.head:b.head + len(raw)] = raw
    b.vectorNumElems = len(raw)
    return b.EndVector()


class _Lowered:
    """The graph as TFLite tensors (by index) and operators, parameter inputs made explicit."""

    def __init__(self, graph: Graph, float16_weights: bool):
        self.graph = graph
        self.tensors: list[_Tensor] = []
        self.index: dict[str, int] = {}
        self.ops: list[_Op] = []
        self.float16_weights = float16_weights
        for name in graph.inputs:
            self.tensor_of(name)
        for op in graph.ops:
            self.lower(op)
        self.inputs = [self.index[n] for n in graph.inputs]
        self.outputs = [self.index[n] for n in graph.outputs]

    def add(self, t: _Tensor) -> int:
        self.tensors.append(t)
        return len(self.tensors) - 1

    def tensor_of(self, name: str) -> int:
        if name not in self.index:
            t = self.graph.tensors[name]
            if self.float16_weights and t.is_const and t.dtype == "float32":
                # TensorFlow's float16 scheme: a float16 constant and a DEQUANTIZE to float32.
                half = self.add(_Tensor(f"{name}/float16", t.shape, "float16", t.data.astype(np.float16)))
                self.index[name] = self.add(_Tensor(name, t.shape, "float32"))
                self.ops.append(_Op("dequantize", [half], [self.index[name]]))
            else:
                self.index[name] = self.add(_Tensor(name, t.shape, t.dtype, t.data, t.quant))
        return self.index[name]

    def parameter(self, op: Op, what: str, values) -> int:
        data = np.asarray(values, np.int32)
        return self.add(_Tensor(f"{op.outputs[0]}/{what}", data.shape, "int32", data))

    def lower(self, op: Op) -> None:
        if "folded_pad" in op.attrs:
            raise ValueError(f"op {op.name}: export the graph before pad folding")
        inputs = [self.tensor_of(n) for n in op.inputs]
        out = self.graph.tensors[op.outputs[0]]
        if op.kind == "mean":
            inputs.append(self.parameter(op, "axes", op.attrs["axes"]))
        elif op.kind == "pad":
            inputs.append(self.parameter(op, "paddings", op.attrs["paddings"]))
        elif op.kind == "reshape":
            inputs.append(self.parameter(op, "shape", out.shape))
        elif op.kind == "transpose":
            inputs.append(self.parameter(op, "perm", op.attrs["perm"]))
        int8 = out.dtype == "int8" or self.graph.tensors[op.inputs[0]].dtype == "int8"
        self.ops.append(_Op(op.kind, inputs, [self.tensor_of(op.outputs[0])], op.attrs, int8))


def _options(b: flatbuffers.Builder, op: _Op, shape_of) -> int | None:
    a = op.attrs
    act = ACTIVATIONS[a.get("activation")]
    if op.kind == "conv2d":
        return _table(b, "Conv2DOptions", Padding=PADDINGS[a["padding"]], StrideW=a["stride"][1],
                      StrideH=a["stride"][0], FusedActivationFunction=act,
                      DilationWFactor=a.get("dilation", (1, 1))[1], DilationHFactor=a.get("dilation", (1, 1))[0])
    if op.kind == "depthwise_conv2d":
        multiplier = shape_of(op.outputs[0])[3] // shape_of(op.inputs[0])[3]
        return _table(b, "DepthwiseConv2DOptions", Padding=PADDINGS[a["padding"]], StrideW=a["stride"][1],
                      StrideH=a["stride"][0], DepthMultiplier=multiplier, FusedActivationFunction=act,
                      DilationWFactor=a.get("dilation", (1, 1))[1], DilationHFactor=a.get("dilation", (1, 1))[0])
    if op.kind == "fully_connected":
        return _table(b, "FullyConnectedOptions", FusedActivationFunction=act)
    if op.kind in ("add", "mul"):
        return _table(b, "AddOptions" if op.kind == "add" else "MulOptions", FusedActivationFunction=act)
    if op.kind in ("avg_pool2d", "max_pool2d"):
        return _table(b, "Pool2DOptions", Padding=PADDINGS[a["padding"]], StrideW=a["stride"][1],
                      StrideH=a["stride"][0], FilterWidth=a["filter"][1], FilterHeight=a["filter"][0],
                      FusedActivationFunction=act)
    if op.kind == "mean":
        return _table(b, "ReducerOptions", KeepDims=bool(a.get("keep_dims", False)))
    if op.kind == "reshape":
        new_shape = b.CreateNumpyVector(np.asarray(shape_of(op.outputs[0]), np.int32))
        return _table(b, "ReshapeOptions", NewShape=new_shape)
    if op.kind == "concat":
        return _table(b, "ConcatenationOptions", Axis=a["axis"], FusedActivationFunction=act)
    if op.kind == "softmax":
        return _table(b, "SoftmaxOptions", Beta=float(a.get("beta", 1.0)))
    table = BUILTINS[op.kind][1]
    return _table(b, table) if table else None


def _quantization(b: flatbuffers.Builder, quant) -> int | None:
    if quant is None:
        return None
    scale = b.CreateNumpyVector(np.asarray(quant.scale, np.float32).reshape(-1))
    zero_point = b.CreateNumpyVector(np.asarray(quant.zero_point, np.int64).reshape(-1))
    return _table(b, "QuantizationParameters", Scale=scale, ZeroPoint=zero_point,
                  QuantizedDimension=int(quant.axis or 0))


def export_tflite(graph: Graph, float16_weights: bool = False, description: str = "tinydeploy") -> bytes:
    """The graph as a TFLite flatbuffer (file identifier TFL3, schema version 3)."""
    lowered = _Lowered(graph, float16_weights)
    b = flatbuffers.Builder(1024)
    buffers = [_table(b, "Buffer")]  # buffer 0: the empty sentinel every tensor without data uses
    tensor_offsets = []
    for t in lowered.tensors:
        buffer_index = 0
        if t.data is not None:
            data = _bytes(b, np.ascontiguousarray(t.data, np.dtype(t.dtype)).tobytes())
            buffers.append(_table(b, "Buffer", Data=data))
            buffer_index = len(buffers) - 1
        shape = b.CreateNumpyVector(np.asarray(t.shape, np.int32))
        signature = b.CreateNumpyVector(np.asarray(t.shape, np.int32))
        name = b.CreateString(t.name)
        quant = _quantization(b, t.quant)
        tensor_offsets.append(_table(b, "Tensor", Shape=shape, Type=TENSOR_TYPES[t.dtype], Buffer=buffer_index,
                                     Name=name, Quantization=quant, ShapeSignature=signature))
    codes: dict[tuple[str, int], int] = {}
    op_offsets = []
    shape_of = lambda i: lowered.tensors[i].shape  # noqa: E731
    for op in lowered.ops:
        builtin, _, float_version, int8_version = BUILTINS[op.kind]
        codes.setdefault((builtin, int8_version if op.int8 else float_version), len(codes))
        inputs = b.CreateNumpyVector(np.asarray(op.inputs, np.int32))
        outputs = b.CreateNumpyVector(np.asarray(op.outputs, np.int32))
        options = _options(b, op, shape_of)
        options_type = getattr(tflite.BuiltinOptions, BUILTINS[op.kind][1]) if options is not None else 0
        op_offsets.append(_table(b, "Operator", OpcodeIndex=codes[(builtin, int8_version if op.int8 else float_version)],
                                 Inputs=inputs, Outputs=outputs, BuiltinOptionsType=options_type,
                                 BuiltinOptions=options))
    code_offsets = []
    for builtin, version in codes:
        code = getattr(tflite.BuiltinOperator, builtin)
        code_offsets.append(_table(b, "OperatorCode", DeprecatedBuiltinCode=min(code, 127), Version=version,
                                   BuiltinCode=code))
    subgraph = _table(b, "SubGraph", Tensors=_offsets(b, tensor_offsets),
                      Inputs=b.CreateNumpyVector(np.asarray(lowered.inputs, np.int32)),
                      Outputs=b.CreateNumpyVector(np.asarray(lowered.outputs, np.int32)),
                      Operators=_offsets(b, op_offsets), Name=b.CreateString("main"))
    signature = _signature(b, lowered)
    model = _table(b, "Model", Version=3, OperatorCodes=_offsets(b, code_offsets),
                   Subgraphs=_offsets(b, [subgraph]), Description=b.CreateString(description),
                   Buffers=_offsets(b, buffers), SignatureDefs=_offsets(b, [signature]))
    b.Finish(model, file_identifier=b"TFL3")
    return bytes(b.Output())


def _signature(b: flatbuffers.Builder, lowered: _Lowered) -> int:
    """serving_default, so LiteRT's signature runner finds the inputs and outputs by name."""
    def tensor_map(indices):
        return _offsets(b, [_table(b, "TensorMap", Name=b.CreateString(lowered.tensors[i].name), TensorIndex=i)
                            for i in indices])
    inputs, outputs = tensor_map(lowered.inputs), tensor_map(lowered.outputs)
    return _table(b, "SignatureDef", Inputs=inputs, Outputs=outputs,
                  SignatureKey=b.CreateString("serving_default"), SubgraphIndex=0)
