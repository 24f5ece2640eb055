"""Integer reference executor: TensorFlow Lite Micro's int8 semantics in numpy.

One function per op kind, `ref_<kind>(params, *inputs) -> output`, with `params` from
toolchain.lowering. Everything is exact integer arithmetic on int64 (float only where TFLM
itself uses float: the QUANTIZE/DEQUANTIZE boundary). This is the oracle for the generated C.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import fixedpoint as fp
from .errors import UserError
from .ir import Graph
from .lowering import lower


def _clamp(x, act, dtype="int8"):
    return np.clip(x, act[0], act[1]).astype(dtype)


def sliding_windows(x, p, pad_value):
    """(N, OH, OW, C, KH, KW) input windows of a strided, dilated, padded 2D sliding filter."""
    (kh, kw), (sh, sw), (dh, dw), (pt, pl) = p["filter"], p["stride"], p["dilation"], p["pad"]
    n, oh, ow = p["out_shape"][0], p["out_shape"][1], p["out_shape"][2]
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    need_h, need_w = (oh - 1) * sh + eh, (ow - 1) * sw + ew
    h, w = x.shape[1], x.shape[2]
    padded = np.pad(x, ((0, 0), (pt, max(need_h - h - pt, 0)), (pl, max(need_w - w - pl, 0)), (0, 0)),
                    constant_values=pad_value)
    win = sliding_window_view(padded, (eh, ew), axis=(1, 2))
    return win[:, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw, :, ::dh, ::dw]


def _requantize(acc, p, channel_axis=-1):
    y = fp.multiply_by_quantized_multiplier(acc, p["multiplier"], p["shift"])
    return _clamp(y + p["output_offset"], p["act"])


def ref_conv2d(p, x, w, b=None):
    xs = x.astype(np.int64) + p["input_offset"]
    win = sliding_windows(xs, p, 0)  # N,OH,OW,C,KH,KW ; padding contributes nothing
    acc = np.einsum("nhwcij,oijc->nhwo", win.astype(np.float64), w.astype(np.float64), optimize=True)
    acc = np.rint(acc).astype(np.int64)
    if b is not None:
        acc = acc + b.astype(np.int64)
    return _requantize(acc, p)


def ref_depthwise_conv2d(p, x, w, b=None):
    xs = x.astype(np.int64) + p["input_offset"]
    win = sliding_windows(xs, p, 0)
    win = np.repeat(win, p["depth_multiplier"], axis=3)  # N,OH,OW,O,KH,KW
    acc = np.einsum("nhwoij,ijo->nhwo", win, w[0].astype(np.int64))
    if b is not None:
        acc = acc + b.astype(np.int64)
    return _requantize(acc, p)


def ref_fully_connected(p, x, w, b=None):
    xs = x.reshape(p["batches"], p["depth"]).astype(np.int64) + p["input_offset"]
    ws = w.astype(np.int64) + p["filter_offset"]
    acc = xs @ ws.T
    if b is not None:
        acc = acc + b.astype(np.int64)
    return _requantize(acc, p)


def ref_add(p, a, b):
    shape = p["out_shape"]
    a = np.broadcast_to(a.reshape((1,) * (4 - a.ndim) + a.shape), shape).astype(np.int64)
    b = np.broadcast_to(b.reshape((1,) * (4 - b.ndim) + b.shape), shape).astype(np.int64)
    sa = fp.multiply_by_pot(fp.saturating_rounding_doubling_high_mul(
        (a + p["a_offset"]) * (1 << p["left_shift"]), p["a_multiplier"]), p["a_shift"])
    sb = fp.multiply_by_pot(fp.saturating_rounding_doubling_high_mul(
        (b + p["b_offset"]) * (1 << p["left_shift"]), p["b_multiplier"]), p["b_shift"])
    out = fp.multiply_by_pot(fp.saturating_rounding_doubling_high_mul(sa + sb, p["multiplier"]), p["shift"])
    return _clamp(out + p["output_offset"], p["act"])


def ref_mul(p, a, b):
    shape = p["out_shape"]
    a = np.broadcast_to(a.reshape((1,) * (4 - a.ndim) + a.shape), shape).astype(np.int64)
    b = np.broadcast_to(b.reshape((1,) * (4 - b.ndim) + b.shape), shape).astype(np.int64)
    prod = fp.wrap_int32((a + p["a_offset"]) * (b + p["b_offset"]))
    return _clamp(fp.multiply_by_quantized_multiplier(prod, p["multiplier"], p["shift"])
                  + p["output_offset"], p["act"])


def ref_avg_pool2d(p, x):
    win = sliding_windows(x.astype(np.int64), p, 0)
    valid = sliding_windows(np.ones(x.shape[:3] + (1,), np.int64), p, 0)
    total = win.sum(axis=(-2, -1))
    count = valid.sum(axis=(-2, -1))
    avg = np.where(total > 0, total + count // 2, total - count // 2)
    avg = np.sign(avg) * (np.abs(avg) // count)  # C division truncates toward zero
    return _clamp(avg, p["act"])


def ref_max_pool2d(p, x):
    win = sliding_windows(x.astype(np.int64), p, -(1 << 40))
    return _clamp(win.max(axis=(-2, -1)), p["act"])


def ref_mean(p, x):
    x4 = x.reshape(p["in_shape"]).astype(np.int64)
    axes = tuple(i for i, r in enumerate(p["reduce"]) if r)
    total = x4.sum(axis=axes, keepdims=True) - p["input_zero_point"] * p["count"]
    y = fp.multiply_by_quantized_multiplier(fp.wrap_int32(total), p["multiplier"], p["shift"])
    return _clamp(y + p["output_offset"], (-128, 127))


def ref_pad(p, x):
    x4 = x.reshape(p["in_shape"])
    widths = [(b, o - i - b) for b, i, o in zip(p["before"], p["in_shape"], p["out_shape"])]
    return np.pad(x4, widths, constant_values=p["value"]).astype(x.dtype)


def ref_reshape(p, x):
    return x


def ref_transpose(p, x):
    flat = x.reshape(-1)
    idx = np.zeros(p["out_shape"], np.int64)
    for axis, stride in enumerate(p["strides"]):
        shape = [1, 1, 1, 1]
        shape[axis] = p["out_shape"][axis]
        idx = idx + np.arange(p["out_shape"][axis]).reshape(shape) * stride
    return flat[idx]


def ref_concat(p, *xs):
    parts = [x.reshape(p["outer"], -1).view(np.uint8).reshape(p["outer"], -1) for x in xs]
    return np.concatenate(parts, axis=1).reshape(-1).view(xs[0].dtype)


def _exp_on_negative_values(a):
    """gemmlowp exp_on_negative_values for Q5.26 input, Q0.31 output."""
    a = np.asarray(a, np.int64)
    frac_bits = 26
    one_quarter = 1 << (frac_bits - 2)
    mask = one_quarter - 1
    a_mod = (a & mask) - one_quarter
    x = fp.saturating_left_shift(a_mod, 5) + (1 << 28)  # Rescale<0>, then + 1/8
    mul = fp.saturating_rounding_doubling_high_mul
    x2 = mul(x, x)
    x3 = mul(x2, x)
    x4 = mul(x2, x2)
    x4_over_4 = fp.rounding_divide_by_pot(x4, 2)
    poly = fp.rounding_divide_by_pot(mul(x4_over_4 + x3, 715827883) + x2, 1)
    constant = 1895147668
    result = constant + mul(constant, x + poly)
    remainder = a_mod - a
    for exponent, multiplier in ((-2, 1672461947), (-1, 1302514674), (0, 790015084),
                                 (1, 290630308), (2, 39332535), (3, 720401), (4, 242)):
        bit = (remainder & (1 << (frac_bits + exponent))) != 0
        result = np.where(bit, mul(result, multiplier), result)
    return np.where(a == 0, fp.INT32_MAX, result)


def _one_over_one_plus_x(a):
    """gemmlowp one_over_one_plus_x_for_x_in_0_1 (Q0.31 in and out)."""
    mul = fp.saturating_rounding_doubling_high_mul
    total = np.asarray(a, np.int64) + fp.INT32_MAX
    half_denominator = np.where(total >= 0, total + 1, total - 1)
    half_denominator = np.sign(half_denominator) * (np.abs(half_denominator) // 2)
    x = 1515870810 + mul(half_denominator, -1010580540)
    for _ in range(3):
        one_minus = (1 << 29) - mul(half_denominator, x)
        x = x + fp.saturating_left_shift(mul(x, one_minus), 2)
    return fp.saturating_left_shift(x, 1)


def _softmax_exps(p, x):
    """Per row: which classes count (diff >= diff_min), exp(diff) in Q0.31, and the sum of exps in Q12.19."""
    rows = x.reshape(p["outer"], p["depth"]).astype(np.int64)
    diff = rows - rows.max(axis=1, keepdims=True)
    use = diff >= p["diff_min"]
    scaled = fp.saturating_rounding_doubling_high_mul(fp.wrap_int32(diff * (1 << p["left_shift"])),
                                                       p["multiplier"])
    exps = _exp_on_negative_values(scaled)
    sums = np.where(use, fp.rounding_divide_by_pot(exps, 12), 0).sum(axis=1)
    return use, exps, sums


def softmax_beyond_tflm(p, x) -> bool:
    """Whether TFLM asserts on this input: a sum of exps of more than 28 bits (over 512 classes
    near the row's maximum) makes its final RoundingDivideByPOT exponent exceed 31. The reference
    and the C take that division in 64 bits (every output rounds to the bottom of the range)."""
    _, _, sums = _softmax_exps(p, x)
    return any((int(total) & 0xFFFFFFFF).bit_length() > 28 for total in sums)


def ref_softmax(p, x):
    use, exps, sums = _softmax_exps(p, x)
    out = np.empty(exps.shape, np.int64)
    for i, total in enumerate(sums):
        total = int(total) & 0xFFFFFFFF   # TFLM's int32 sum wraps (beyond 4096 classes); CLZ reads it unsigned
        headroom = 32 - total.bit_length()
        bits_over_unit = 12 - headroom
        shifted_minus_one = int(fp.wrap_int32(((total << headroom) & 0xFFFFFFFF) - (1 << 31)))
        scale = _one_over_one_plus_x(shifted_minus_one)
        exponent = bits_over_unit + 31 - 8
        values = fp.rounding_divide_by_pot(fp.saturating_rounding_doubling_high_mul(scale, exps[i]),
                                           exponent) - 128
        out[i] = np.where(use[i], np.clip(values, -128, 127), -128)
    return out.astype(np.int8)


def ref_quantize(p, x):
    if x.dtype == np.float32:
        # roundf(x / scale) in float32, half away from zero, plus the zero point, saturated. From
        # +-2^31 on, and for NaN, TFLM's conversion gives INT32_MIN (x86), to which it adds the
        # zero point, wrapping: the top of the range for a negative zero point, else the bottom.
        d = (x / np.float32(p["scale"])).astype(np.float64)
        wild = ~(np.abs(d) < 2.0 ** 31)
        q = np.clip(np.sign(d) * np.floor(np.abs(np.nan_to_num(d)) + 0.5), -(1 << 30), 1 << 30)
        q = np.where(wild, (1 << 30) if p["zero_point"] < 0 else -(1 << 30), q)
        return np.clip(q.astype(np.int64) + p["zero_point"], -128, 127).astype(np.int8)
    y = fp.multiply_by_quantized_multiplier(x.astype(np.int64) - p["input_zero_point"],
                                            p["multiplier"], p["shift"])
    return np.clip(y + p["zero_point"], *p["act"]).astype(np.int8)


def ref_dequantize(p, x):
    return (np.float64(p["scale"]) * (x.astype(np.float64) - p["zero_point"])).astype(np.float32)


def ref_relu(p, x):
    y = fp.multiply_by_quantized_multiplier(x.astype(np.int64) - p["input_zero_point"],
                                            p["multiplier"], p["shift"])
    return _clamp(y + p["output_offset"], p["act"])


def ref_relu6(p, x):
    return _clamp(x.astype(np.int64), p["act"])


REFERENCE_OPS = {name[4:]: fn for name, fn in globals().items() if name.startswith("ref_")}


# Inputs on which TensorFlow Lite Micro's kernels assert, per op kind: (params, input) -> bool.
BEYOND_TFLM = {"softmax": softmax_beyond_tflm}


def ops_beyond_tflm(graph: Graph, feeds: list[np.ndarray]) -> list[str]:
    """The ops (as 'KIND (op N)') whose input, on these feeds, is one TFLM's kernels assert on."""
    values = run_reference(graph, feeds, keep=True)
    return [f"{op.kind.upper()} (op {i})" for i, op in enumerate(graph.ops)
            if op.kind in BEYOND_TFLM and BEYOND_TFLM[op.kind](lower(graph, op), values[op.inputs[0]])]


def run_reference(graph: Graph, feeds: list[np.ndarray], keep: bool = False) -> list[np.ndarray] | dict:
    """Run the graph on one set of inputs (one array per graph input, in graph dtype and shape).

    Returns the graph outputs, or with keep=True every tensor's value by name.
    """
    values: dict[str, np.ndarray] = {}
    for name, feed in zip(graph.inputs, feeds, strict=True):
        t = graph.tensors[name]
        values[name] = np.asarray(feed, dtype=t.dtype).reshape(t.shape)
    run_ops(graph, values, range(len(graph.ops)))
    if keep:
        return values
    return [values[n] for n in graph.outputs]


def run_ops(graph: Graph, values: dict[str, np.ndarray], ops) -> dict[str, np.ndarray]:
    """Run the ops with indices `ops` (in order) on `values` (tensor name -> array), adding
    their outputs to it."""
    for index in ops:
        op = graph.ops[index]
        args = [values[n] if n in values else graph.tensors[n].data for n in op.inputs]
        if op.kind not in REFERENCE_OPS:
            raise UserError(f"op {op.name}: no reference implementation for '{op.kind}'")
        out = REFERENCE_OPS[op.kind](lower(graph, op), *args)
        t = graph.tensors[op.outputs[0]]
        values[op.outputs[0]] = np.asarray(out).astype(t.dtype).reshape(t.shape)
    return values
