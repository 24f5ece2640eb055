"""Integer parameters of each int8 op, computed exactly as TensorFlow Lite Micro's Prepare does.

One function per op kind returns a plain dict (offsets, multipliers, shifts, activation range,
padding). The numpy reference executor and the C emitter both read these dicts, so the C code and
its oracle cannot disagree about a constant; the tests hold the reference to TFLM.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import UserError
from .fixedpoint import quantize_multiplier, tflite_round
from .ir import Graph, Op, Tensor

QRANGE = {"int8": (-128, 127), "int16": (-32768, 32767), "uint8": (0, 255), "int32": (-(1 << 31), (1 << 31) - 1)}


def f32(x) -> np.float32:
    return np.float32(x)


def quantize_float(value: float, t: Tensor) -> int:
    """TFLite's Quantize(): zero_point + round(value / scale), division in float32."""
    return t.zero_point() + tflite_round(float(f32(value) / f32(t.scale())))


def activation_range(activation: str | None, out: Tensor) -> tuple[int, int]:
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


def _per_channel_multipliers(inp: Tensor, weights: Tensor, out: Tensor, channels: int):
    """PopulateConvolutionQuantizationParams: double(in) * double(filter) / double(out)."""
    scales = weights.quant.scale.reshape(-1).astype(np.float32)
    if scales.size == 1:
        scales = np.repeat(scales, channels)
    pairs = [quantize_multiplier(float(f32(inp.scale())) * float(s) / float(f32(out.scale())))
             for s in scales]
    return (np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64))


def _require_int8(graph: Graph, op: Op) -> None:
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


def _conv(graph: Graph, op: Op, channel_axis: int) -> dict:
    """Conv and depthwise conv: spatial geometry plus per-channel requantization (the output
    channels lie on weight axis 0 for conv, OHWI, and axis 3 for depthwise, 1HWO)."""
    _require_int8(graph, op)
    inp, w, out = (graph.tensors[n] for n in (op.inputs[0], op.inputs[1], op.outputs[0]))
    mult, shift = _per_channel_multipliers(inp, w, out, w.shape[channel_axis])
    p = spatial_geometry(graph, op, w.shape[1], w.shape[2])
    p.update(input_offset=-inp.zero_point(), output_offset=out.zero_point(),
             multiplier=mult, shift=shift, act=activation_range(op.attrs.get("activation"), out))
    return p


def lower_conv2d(graph: Graph, op: Op) -> dict:
    return _conv(graph, op, 0)


def lower_depthwise_conv2d(graph: Graph, op: Op) -> dict:
    p = _conv(graph, op, 3)
    p["depth_multiplier"] = p["out_shape"][3] // p["in_shape"][3]
    return p


def lower_fully_connected(graph: Graph, op: Op) -> dict:
    _require_int8(graph, op)
    inp, w, out = (graph.tensors[n] for n in (op.inputs[0], op.inputs[1], op.outputs[0]))
    units, depth = w.shape
    if w.quant.per_channel:
        mult, shift = _per_channel_multipliers(inp, w, out, units)
    else:
        # GetQuantizedConvolutionMultipler: the product of scales is taken in float32.
        product = float(f32(inp.scale()) * f32(w.scale()))
        m, s = quantize_multiplier(product / float(f32(out.scale())))
        mult, shift = np.array([m], np.int64), np.array([s], np.int64)
    return {"batches": inp.size // depth, "depth": depth, "units": units,
            "input_offset": -inp.zero_point(), "filter_offset": -int(w.quant.zero_point.reshape(-1)[0]),
            "output_offset": out.zero_point(), "multiplier": mult, "shift": shift,
            "act": activation_range(op.attrs.get("activation"), out)}


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


def _binary(graph, op):
    _require_int8(graph, op)
    a, b, out = (graph.tensors[n] for n in (op.inputs[0], op.inputs[1], op.outputs[0]))
    shape = out_shape4(out.shape)
    return a, b, out, {"out_shape": shape, "a_strides": broadcast_strides(a.shape, out.shape),
                       "b_strides": broadcast_strides(b.shape, out.shape)}


def lower_add(graph: Graph, op: Op) -> dict:
    a, b, out, p = _binary(graph, op)
    left_shift = 20
    twice_max = 2 * float(max(f32(a.scale()), f32(b.scale())))
    m1, s1 = quantize_multiplier(float(f32(a.scale())) / twice_max)
    m2, s2 = quantize_multiplier(float(f32(b.scale())) / twice_max)
    mo, so = quantize_multiplier(twice_max / ((1 << left_shift) * float(f32(out.scale()))))
    p.update(a_offset=-a.zero_point(), b_offset=-b.zero_point(), output_offset=out.zero_point(),
             left_shift=left_shift, a_multiplier=m1, a_shift=s1, b_multiplier=m2, b_shift=s2,
             multiplier=mo, shift=so, act=activation_range(op.attrs.get("activation"), out))
    return p


def lower_mul(graph: Graph, op: Op) -> dict:
    a, b, out, p = _binary(graph, op)
    m, s = quantize_multiplier(float(f32(a.scale())) * float(f32(b.scale())) / float(f32(out.scale())))
    p.update(a_offset=-a.zero_point(), b_offset=-b.zero_point(), output_offset=out.zero_point(),
             multiplier=m, shift=s, act=activation_range(op.attrs.get("activation"), out))
    return p


def _pool(graph, op):
    _require_int8(graph, op)
    fh, fw = op.attrs["filter"]
    p = spatial_geometry(graph, op, fh, fw)
    p["act"] = activation_range(op.attrs.get("activation"), graph.tensors[op.outputs[0]])
    return p


lower_avg_pool2d = _pool
lower_max_pool2d = _pool


def lower_mean(graph: Graph, op: Op) -> dict:
    _require_int8(graph, op)
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    in_shape = out_shape4(inp.shape)
    offset = 4 - len(inp.shape)
    axes = sorted({(a % len(inp.shape)) + offset for a in op.attrs["axes"]})
    count = int(np.prod([in_shape[a] for a in axes]))
    mult, shift = quantize_multiplier(float(f32(inp.scale())) / float(f32(out.scale())))
    # QuantizedMeanOrSum folds 1/count into the multiplier.
    extra = min(count.bit_length() - 1, 32, 31 + shift)
    mult = ((mult << extra) // count) if extra >= 0 else (mult >> -extra) // count
    return {"in_shape": in_shape, "reduce": tuple(int(a in axes) for a in range(4)), "count": count,
            "input_zero_point": inp.zero_point(), "output_offset": out.zero_point(),
            "multiplier": int(mult), "shift": int(shift - extra)}


def lower_pad(graph: Graph, op: Op) -> dict:
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    lead = 4 - len(inp.shape)
    paddings = ((0, 0),) * lead + tuple(op.attrs["paddings"])
    value = op.attrs.get("pad_value", out.zero_point() if out.quant is not None else 0)
    return {"in_shape": out_shape4(inp.shape), "out_shape": out_shape4(out.shape),
            "before": tuple(a for a, _ in paddings), "value": int(value)}


def lower_reshape(graph: Graph, op: Op) -> dict:
    return {"bytes": graph.tensors[op.inputs[0]].nbytes}


def lower_transpose(graph: Graph, op: Op) -> dict:
    inp = graph.tensors[op.inputs[0]]
    perm = op.attrs["perm"]
    lead = 4 - len(perm)
    perm4 = tuple(range(lead)) + tuple(p + lead for p in perm)
    in_shape = out_shape4(inp.shape)
    in_strides = np.cumprod((in_shape[1:] + (1,))[::-1])[::-1]
    return {"out_shape": tuple(in_shape[p] for p in perm4),
            "strides": tuple(int(in_strides[p]) for p in perm4),
            "elem_bytes": {1: 1, 2: 2, 4: 4}[np.dtype(inp.dtype).itemsize]}


def lower_concat(graph: Graph, op: Op) -> dict:
    out = graph.tensors[op.outputs[0]]
    axis = op.attrs["axis"] % len(out.shape)
    outer = int(np.prod(out.shape[:axis]))
    size = np.dtype(out.dtype).itemsize
    inner = [int(np.prod(graph.tensors[n].shape[axis:])) * size for n in op.inputs]
    return {"outer": outer, "chunk_bytes": tuple(inner)}


def lower_softmax(graph: Graph, op: Op) -> dict:
    _require_int8(graph, op)
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if out.zero_point() != -128 or f32(out.scale()) != f32(1.0 / 256):
        raise UserError(f"op {op.name}: int8 softmax needs output scale 1/256 and zero point -128")
    integer_bits = 5
    real = min(float(op.attrs.get("beta", 1.0)) * float(f32(inp.scale())) * (1 << (31 - integer_bits)),
               (1 << 31) - 1.0)
    mult, left_shift = quantize_multiplier(real)
    radius = math.floor(((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) / (1 << left_shift))
    return {"depth": inp.shape[-1], "outer": inp.size // inp.shape[-1],
            "multiplier": mult, "left_shift": left_shift, "diff_min": -radius}


def lower_quantize(graph: Graph, op: Op) -> dict:
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if out.dtype != "int8":
        raise UserError(f"op {op.name}: QUANTIZE to {out.dtype} is not supported (int8 only)")
    if inp.dtype == "float32":
        return {"count": out.size, "scale": float(f32(out.scale())), "zero_point": out.zero_point()}
    if inp.dtype == "int8":
        m, s = quantize_multiplier(float(f32(inp.scale())) / float(f32(out.scale())))
        return {"count": out.size, "input_zero_point": inp.zero_point(),
                "zero_point": out.zero_point(), "multiplier": m, "shift": s,
                "act": activation_range(None, out)}   # a narrower feature map clamps to its width
    raise UserError(f"op {op.name}: QUANTIZE from {inp.dtype} is not supported")


def lower_dequantize(graph: Graph, op: Op) -> dict:
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if inp.dtype != "int8" or out.dtype != "float32":
        raise UserError(f"op {op.name}: DEQUANTIZE {inp.dtype}->{out.dtype} is not supported")
    return {"count": inp.size, "scale": float(f32(inp.scale())), "zero_point": inp.zero_point()}


def lower_relu(graph: Graph, op: Op) -> dict:
    _require_int8(graph, op)
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    m, s = quantize_multiplier(float(f32(inp.scale()) / f32(out.scale())))
    qmin, qmax = QRANGE[out.dtype]
    return {"count": out.size, "input_zero_point": inp.zero_point(), "output_offset": out.zero_point(),
            "multiplier": m, "shift": s,
            "act": (max(qmin, out.zero_point() + tflite_round(0.0)), qmax)}


def lower_relu6(graph: Graph, op: Op) -> dict:
    _require_int8(graph, op)
    inp = graph.tensors[op.inputs[0]]
    six = tflite_round(float(f32(6.0) / f32(inp.scale()))) + inp.zero_point()
    return {"count": inp.size, "act": (inp.zero_point(), max(-128, min(127, six)))}


def lower(graph: Graph, op: Op) -> dict:
    return globals()[f"lower_{op.kind}"](graph, op)
