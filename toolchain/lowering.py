"""The arithmetic of TensorFlow Lite Micro's Prepare that several ops share: activation ranges,
padding, per-channel requantization multipliers, window geometry, broadcasting. Each op's
`lower` (toolchain/ops/<op>.py) builds its constants from these; the numpy reference executor and
the C emitter both read what it returns, so the C code and its oracle cannot disagree about a
constant; the tests hold the reference to TFLM.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np

from .errors import UserError
from .fixedpoint import quantize_multipliers, tflite_round

QRANGE = {"int8": (-128, 127), "int16": (-32768, 32767), "uint8": (0, 255), "int32": (-(1 << 31), (1 << 31) - 1)}


def lowered(graph, op, lower: Callable) -> Mapping:
    """`lower(graph, op)`, the op's constants, computed once per graph and op (Graph.derived) and
    read-only: the planner, the schedule search, the emitter and the reports share one lowering."""
    return graph.derived("lower", op, lambda: MappingProxyType(lower(graph, op)))


def f32(x) -> np.float32:
    return np.float32(x)


def quantize_float(value: float, t) -> int:
    """TFLite's Quantize(): zero_point + round(value / scale), division in float32."""
    return t.zero_point() + tflite_round(float(f32(value) / f32(t.scale())))


def activation_range(activation: str | None, out) -> tuple[int, int]:
    """CalculateActivationRangeQuantized; an int8 tensor of fewer bits (QuantParams.bits: a 4-bit
    feature map held in int8) clamps to that width's two's complement range."""
    qmin, qmax = QRANGE[out.dtype]
    if out.quant is not None and out.quant.bits < 8 and out.dtype == "int8":
        qmin, qmax = -(1 << (out.quant.bits - 1)), (1 << (out.quant.bits - 1)) - 1
    if activation is None:
        return qmin, qmax
    if activation == "relu":
        return max(qmin, quantize_float(0.0, out)), qmax
    if activation == "relu6":
        return max(qmin, quantize_float(0.0, out)), min(qmax, quantize_float(6.0, out))
    if activation == "relu_n1_to_1":
        return max(qmin, quantize_float(-1.0, out)), min(qmax, quantize_float(1.0, out))
    raise UserError(f"unsupported fused activation {activation}")


def conv_padding(in_size: int, filt: int, stride: int, dilation: int, out_size: int) -> int:
    """ComputePaddingWithOffset: the padding before the first row/column."""
    effective = (filt - 1) * dilation + 1
    total = max((out_size - 1) * stride + effective - in_size, 0)
    return total // 2


def per_channel_multipliers(inp, weights, out, channels: int):
    """PopulateConvolutionQuantizationParams: double(in) * double(filter) / double(out)."""
    scales = weights.quant.scale.reshape(-1).astype(np.float32)
    if scales.size == 1:
        scales = np.repeat(scales, channels)
    # the same double operations in the same order as quantize_multiplier(in * s / out) per channel
    reals = np.float64(f32(inp.scale())) * scales.astype(np.float64) / np.float64(f32(out.scale()))
    return quantize_multipliers(reals)


def require_int8(graph, op) -> None:
    for name in op.inputs[:1] + op.outputs:
        t = graph.tensors[name]
        if t.dtype != "int8" or t.quant is None:
            raise UserError(f"op {op.name or op.kind}: only int8 quantized tensors are supported "
                            f"('{name}' is {t.dtype}{'' if t.quant else ', unquantized'})")


def spatial_geometry(graph, op, filt_h, filt_w):
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    sh, sw = op.attrs["stride"]
    dh, dw = op.attrs.get("dilation", (1, 1))
    (top, bottom), (left, right) = op.attrs.get("folded_pad", ((0, 0), (0, 0)))
    padded_h, padded_w = inp.shape[1] + top + bottom, inp.shape[2] + left + right
    return {
        "in_shape": inp.shape, "out_shape": out.shape, "filter": (filt_h, filt_w),
        "stride": (sh, sw), "dilation": (dh, dw),
        "pad": (top + conv_padding(padded_h, filt_h, sh, dh, out.shape[1]),
                left + conv_padding(padded_w, filt_w, sw, dw, out.shape[2])),
    }


def conv_params(graph, op, channel_axis: int) -> dict:
    """Conv and depthwise conv: window geometry plus per-channel requantization (the output
    channels lie on weight axis 0 for conv, OHWI, and axis 3 for depthwise, 1HWO)."""
    require_int8(graph, op)
    inp, w, out = (graph.tensors[n] for n in (op.inputs[0], op.inputs[1], op.outputs[0]))
    mult, shift = per_channel_multipliers(inp, w, out, w.shape[channel_axis])
    p = spatial_geometry(graph, op, w.shape[1], w.shape[2])
    p.update(in_offset=-inp.zero_point(), out_zero_point=out.zero_point(),
             multiplier=mult, shift=shift, act=activation_range(op.attrs.get("activation"), out))
    return p


def broadcast_strides(shape: tuple, out_shape: tuple) -> tuple[int, ...]:
    """Element strides of `shape` broadcast against 4D `out_shape` (0 where broadcast)."""
    shape = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    strides, step = [], 1
    for dim in reversed(shape):
        strides.append(0 if dim == 1 else step)
        step *= dim
    strides = tuple(reversed(strides))
    return (0,) * (4 - len(strides)) + strides


def out_shape4(shape: tuple) -> tuple[int, ...]:
    if len(shape) > 4:
        raise UserError(f"tensors of rank {len(shape)} are not supported (at most 4)")
    return (1,) * (4 - len(shape)) + tuple(shape)
