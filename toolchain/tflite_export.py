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

from .ir import Graph, Op
from .ops import op_def
from .ops.base import REQUIRED

TENSOR_TYPES = {"float32": tflite.TensorType.FLOAT32, "float16": tflite.TensorType.FLOAT16,
                "int32": tflite.TensorType.INT32, "uint8": tflite.TensorType.UINT8,
                "int64": tflite.TensorType.INT64, "int16": tflite.TensorType.INT16,
                "int8": tflite.TensorType.INT8}
ACTIVATIONS = {None: tflite.ActivationFunctionType.NONE, "relu": tflite.ActivationFunctionType.RELU,
               "relu6": tflite.ActivationFunctionType.RELU6,
               "relu_n1_to_1": tflite.ActivationFunctionType.RELU_N1_TO_1}
PADDINGS = {"same": tflite.Padding.SAME, "valid": tflite.Padding.VALID}

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
        write_params = op_def(op.kind).tflite.write_params
        for what, values in write_params(op, out) if write_params else ():
            inputs.append(self.parameter(op, what, values))
        int8 = out.dtype == "int8" or self.graph.tensors[op.inputs[0]].dtype == "int8"
        self.ops.append(_Op(op.kind, inputs, [self.tensor_of(op.outputs[0])], op.attrs, int8))


def _encode(value, kind: str):
    if kind == "padding":
        return PADDINGS[value]
    if kind == "activation":
        return ACTIVATIONS[value]
    return {"bool": bool, "float": float}.get(kind, lambda v: v)(value)


def _options(b: flatbuffers.Builder, op: _Op, shape_of) -> int | None:
    """The op's options table: its attributes in the fields the op definition names, written in
    the definition's order (vectors first: a table cannot hold one being built)."""
    binding = op_def(op.kind).tflite
    if binding.options is None:
        return None
    values = {}
    for attr, field in binding.fields.items():
        value = op.attrs[attr] if field.default is REQUIRED else op.attrs.get(attr, field.default)
        if isinstance(field.names, str):
            values[field.names] = _encode(value, field.kind)
        else:
            values.update({name: _encode(v, field.kind) for name, v in zip(field.names, value)})
    if binding.write_extra is not None:
        values.update(binding.write_extra(op, shape_of))
    values = {name: b.CreateNumpyVector(v) if isinstance(v, np.ndarray) else v for name, v in values.items()}
    return _table(b, binding.options, **{name: values[name] for name in binding.order})


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
        binding = op_def(op.kind).tflite
        builtin, version = binding.builtins[0], binding.versions[1 if op.int8 else 0]
        codes.setdefault((builtin, version), len(codes))
        inputs = b.CreateNumpyVector(np.asarray(op.inputs, np.int32))
        outputs = b.CreateNumpyVector(np.asarray(op.outputs, np.int32))
        options = _options(b, op, shape_of)
        options_type = getattr(tflite.BuiltinOptions, binding.options) if options is not None else 0
        op_offsets.append(_table(b, "Operator", OpcodeIndex=codes[(builtin, version)],
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
