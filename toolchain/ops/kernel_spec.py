"""Specialized entry points of the optimized kernels (templates/kernels/tdk_opt.h.j2): the `spec`
and `work_bytes` of the op bindings' C side (toolchain/ops/<op>.py).

Everything a kernel's inner loops depend on is known when the C is emitted: channel counts,
kernel size, strides, and which requantization shortcut is exact for this op's constants. Each
conv, depthwise or fully-connected call gets an entry point named after those constants (calls
with the same constants share one), and a bias with the input offset folded in, so the inner
loops are plain dot products:
    sum((x + in_offset) * w) + bias = sum(x * w) + (bias + in_offset * sum(w)).
Padding taps then read the input zero point, whose product with the folded term cancels.
"""
from __future__ import annotations

import numpy as np

from ..fixedpoint import (multiply_by_pot, multiply_by_quantized_multiplier, rounding_divide_by_pot,
                          saturating_rounding_doubling_high_mul)
from ..lowering import spatial_geometry

INT8_RANGE = (-128, 127)
Q_FAST, Q_SIGN, Q_SAT8, Q_ZP_IN_ROUNDING, Q_X2 = 1, 2, 4, 8, 16   # TDK_Q_* in tdk_opt.h.j2 (TDK_Q_ZP_IN_ROUNDING: the zero point in the rounding term)
ZPR_MAX_SHIFT = 22   # |v| <= 2^30, 2^(r-1) + |zp| << r <= 2^29 + 2^21: no int32 overflow
DSP_ROW_ALIGN = 8                  # elements: GEMM rows start 16-byte aligned as int16
DW_PLANE_BYTES = 2048              # depthwise: keep a whole int16 channel plane up to this size
DW_QUAD_BYTES = 2048               # depthwise (DSP): four channels of the plane up to this size


def folded_bias(bias: np.ndarray | None, weights: np.ndarray, in_offset: int) -> np.ndarray:
    """bias + in_offset * sum(w) per output channel (weights as [channels, taps])."""
    sums = weights.astype(np.int64).sum(axis=1)
    base = np.zeros_like(sums) if bias is None else bias.astype(np.int64).reshape(-1)
    return base + in_offset * sums


def requant_mode(lo: np.ndarray, hi: np.ndarray, multiplier, shift, out_offset: int,
                 act: tuple[int, int]) -> int:
    """TDK_Q_* flags for accumulators in [lo, hi] per channel. The fast path needs a right shift
    on every channel, or none on every channel (a zero multiplier does not count: a dead
    channel's output is the zero point whatever its shift and accumulator). It computes SMMULR(2 acc, m) with 2 acc saturated to an
    int32: exact for |acc| < 2^30; a channel whose accumulator can leave that range must clamp
    to one output value beyond it (often a pruned channel: zero weights, huge bias)."""
    multiplier = np.broadcast_to(np.asarray(multiplier, np.int64), lo.shape)
    shift = np.broadcast_to(np.asarray(shift, np.int64), lo.shape)
    live, edge = multiplier != 0, 1 << 30

    def out(acc):
        q = multiply_by_quantized_multiplier(acc, multiplier, shift) + out_offset
        return np.clip(q, act[0], act[1])
    # SMMULR(2^31 - 1, m): the value every acc >= 2^30 gets
    top = np.clip(rounding_divide_by_pot((((1 << 31) - 1) * multiplier + (1 << 31)) >> 32, -shift)
                  + out_offset, act[0], act[1])
    high_ok = (hi < edge) | ((out(np.full_like(hi, edge)) == out(hi)) & (out(hi) == top))
    low_ok = (lo >= -edge) | (out(np.full_like(lo, -edge)) == out(lo))
    mode = 0
    shifted, unshifted = np.all((shift <= -1) | ~live), np.all((shift == 0) | ~live)
    if (shifted or unshifted) and np.all((high_ok & low_ok) | ~live):
        mode |= Q_FAST
        if act[0] < out_offset and not unshifted:   # RoundingDivideByPOT(v, 0) = v: nothing to correct
            mode |= Q_SIGN
        if np.all((-shift <= ZPR_MAX_SHIFT) | ~live):
            mode |= Q_ZP_IN_ROUNDING
    if tuple(act) == INT8_RANGE:
        mode |= Q_SAT8
    return mode


def rows_inplace_ok(p: dict) -> bool:
    """A depthwise conv may run row by row in place (each channel's input rows read into a ring
    just before the output rows that need them) when writing output row oy never reaches an
    input row not read yet: (oy + 1) * out_w <= (last row read + 1) * in_w in pixels."""
    _, in_h, in_w, _ = p["in_shape"]
    _, out_h, out_w, _ = p["out_shape"]
    (kh, _), (sh, _), (dh, _) = p["filter"], p["stride"], p["dilation"]
    for oy in range(out_h):
        read = oy * sh - p["pad"][0] + (kh - 1) * dh
        if read < in_h - 1 and (oy + 1) * out_w > (read + 1) * in_w:
            return False
    return True


def quad_chunks_inplace_ok(p: dict, chunk: int) -> bool:
    """In place, the four-channel depthwise kernel may read the input rows of `chunk` output rows
    at a time when no chunk reads an input row the chunks before it wrote: oy * out_w <= (first
    row read) * in_w in pixels, at each chunk's first output row oy."""
    _, _, in_w, _ = p["in_shape"]
    _, out_h, out_w, _ = p["out_shape"]
    sh = p["stride"][0]
    return all(oy * out_w <= max(oy * sh - p["pad"][0], 0) * in_w for oy in range(chunk, out_h, chunk))


def _quad_rows(p: dict, width: int, base: str, profile) -> int:
    """Output rows the four-channel depthwise kernel (DSP targets, channels % 4 == 0) reads the
    input of at once, at most DW_QUAD_BYTES of it: every row when they fit; else, for strides of
    2 and more with kernels up to 3 wide (where a ring of int16 rows costs most in gathering
    input), as many as fit, each chunk's input read afresh. 0: the kernel is not used."""
    (kh, kw), (sh, _), (dh, _) = p["filter"], p["stride"], p["dilation"]
    if not profile.quad_depthwise or p["in_shape"][3] % 4:
        return 0
    out_h = p["out_shape"][1]
    reach = (kh - 1) * dh + 1
    if ((out_h - 1) * sh + reach) * width * 8 <= DW_QUAD_BYTES:
        return out_h
    rows = (DW_QUAD_BYTES // (width * 8) - reach) // sh + 1
    if sh < 2 or kw > 3 or rows < 1 or (base.endswith("inplace") and not quad_chunks_inplace_ok(p, rows)):
        return 0
    return rows


def c_int(v: int) -> str:
    """An integer as part of a C identifier."""
    return f"m{-v}" if v < 0 else str(v)


def _geometry(graph, op, p: dict, base: str, profile) -> dict | None:
    """The constants the optimized conv, depthwise or fully-connected kernel of call `base` is
    built around, with `work_bytes`: the arena it works in (two im2col rows of the GEMM, plus a
    staging row for conv; the depthwise ring of int16 rows). None: the portable kernel runs."""
    if op.kind == "fully_connected":
        if p["filter_offset"] != 0:
            return None
        spec = {"depth": p["depth"], "units": p["units"], "k": p["depth"]}
    else:
        (kh, kw), (sh, sw), (dh, dw) = p["filter"], p["stride"], p["dilation"]
        ic, oc = p["in_shape"][3], p["out_shape"][3]
        spec = {"ic": ic, "oc": oc, "kh": kh, "kw": kw, "sh": sh, "sw": sw, "dh": dh, "dw": dw,
                "k": kh * kw * ic if op.kind == "conv2d" else kh * kw}
    spec["row_stride"] = -(-spec["k"] // DSP_ROW_ALIGN) * DSP_ROW_ALIGN
    rows = 2 * spec["row_stride"] * 2                 # two int16 rows (tdk_x_t is at most int16)
    if op.kind == "depthwise_conv2d":
        if p["depth_multiplier"] != 1 or (base.endswith("inplace") and not rows_inplace_ok(p)):
            return None
        # a ring of (kh - 1) * dh + 1 input rows (each stored twice), as wide as the widest
        # output row's receptive field, or every row of the view when that is small (plane)
        width = (p["out_shape"][2] - 1) * sw + (kw - 1) * dw + 1
        ring_width = -(-(width + 2) // 4) * 4
        plane_rows = (p["out_shape"][1] - 1) * sh + (kh - 1) * dh + 1
        plane = plane_rows * ring_width * 2 <= DW_PLANE_BYTES
        ring_rows = plane_rows if plane else (kh - 1) * dh + 1
        # four channels at once (DSP targets): two int16 pairs per pixel of quad_rows output rows' input
        quad_rows = _quad_rows(p, width, base, profile)
        quad_bytes = ((quad_rows - 1) * sh + (kh - 1) * dh + 1) * width * 8 if quad_rows else 0
        spec.update(ring_rows=ring_rows, ring_width=ring_width, plane=int(plane), quad=int(quad_rows > 0),
                    quad_rows=quad_rows, plane_w=width,
                    work_bytes=max((1 if plane else 2) * ring_rows * ring_width * 2, quad_bytes))
    else:
        spec["work_bytes"] = rows + (spec["k"] if base == "conv2d" else 0)
    return spec


def weighted_work_bytes(graph, op, base: str, profile) -> int:
    """Arena bytes the optimized conv, depthwise or fully-connected kernel of call `base` works in
    (0: none), whether or not its specialized entry point can be made: the op's scratch buffer
    (patch_inference.schedule plans it at the op's own step)."""
    if op.kind == "fully_connected":
        w = graph.tensors[op.inputs[1]]
        p = {"filter_offset": -w.zero_point(), "depth": w.shape[1], "units": w.shape[0]}
    else:
        w = graph.tensors[op.inputs[1]]
        p = spatial_geometry(graph, op, w.shape[1], w.shape[2])
        p["depth_multiplier"] = p["out_shape"][3] // p["in_shape"][3]
    spec = _geometry(graph, op, p, base, profile)
    return spec["work_bytes"] if spec else 0


def weighted_spec(graph, op, p: dict, base: str, profile) -> dict | None:
    """conv2d, depthwise_conv2d, fully_connected: folded bias, requantization records and, for
    the GEMM kernels, the DSP weight layout."""
    spec = _geometry(graph, op, p, base, profile)
    if spec is None:
        return None
    w = graph.tensors[op.inputs[1]].data
    bias = graph.tensors[op.inputs[2]].data if len(op.inputs) > 2 else None
    if op.kind == "fully_connected":
        taps = w.reshape(w.shape[0], -1)
        name = f"{base}_{spec['depth']}x{spec['units']}"
    else:
        # conv OHWI: a filter per output channel; depthwise 1HWO: a filter column per channel
        taps = w.reshape(w.shape[0], -1) if op.kind == "conv2d" else w.reshape(-1, w.shape[-1]).T
        name = (f"{base}_{spec['ic']}x{spec['oc']}_k{spec['kh']}x{spec['kw']}_s{spec['sh']}x{spec['sw']}"
                f"_d{spec['dh']}x{spec['dw']}")
        if op.kind == "depthwise_conv2d":   # the ring is part of the entry point
            name += f"_r{spec['ring_rows']}x{spec['ring_width']}{'p' if spec['plane'] else ''}"
            chunked = spec["quad_rows"] < p["out_shape"][1]
            name += f"_g4w{spec['plane_w']}{'c' + str(spec['quad_rows']) if chunked else ''}" if spec["quad"] else ""
    folded = folded_bias(bias, taps, p["in_offset"])
    if np.abs(folded).max(initial=0) >= (1 << 31):
        return None
    reach = 128 * np.abs(taps.astype(np.int64)).sum(axis=1)   # inputs lie in [-128, 127]
    mode = requant_mode(folded - reach, folded + reach, p["multiplier"], p["shift"], p["out_zero_point"],
                        p["act"])
    zp_folded = p["out_zero_point"] if mode & Q_ZP_IN_ROUNDING else 0
    # DSP: weights and bias doubled, so the kernels accumulate 2 acc and requantize with one
    # SMMULR (no saturating doubling). GEMM weights are doubled here (int16); depthwise taps, from
    # the int8 weights as each kernel reads them, so sub-8-bit depthwise weights double too.
    # Doubling depthwise taps costs about an instruction per tap and channel, and saves one per
    # output: done when an output channel has at least as many pixels as taps.
    gemm = op.kind != "depthwise_conv2d"
    worth = graph.tensors[op.inputs[1]].quant.bits == 8 if gemm else (   # packed GEMM weights unpack as they are
        p["out_shape"][1] * p["out_shape"][2] >= spec["kh"] * spec["kw"])
    doubled = worth and _doubles(mode, folded - reach, folded + reach, p["multiplier"])
    mode |= Q_X2 if doubled else 0
    name += f"_q{mode}_z{c_int(p['out_zero_point'])}_a{c_int(p['act'][0])}_{c_int(p['act'][1])}"
    spec.update(name=name, base=base, mode=mode, zp=p["out_zero_point"], act_min=p["act"][0],
                act_max=p["act"][1], records=requant_records(folded, p["multiplier"], p["shift"], zp_folded))
    if gemm:
        spec["dsp_weights"] = dsp_gemm_weights(taps.astype(np.int16) * (2 if doubled else 1))
    if doubled:
        spec["dsp_records"] = requant_records(2 * folded, p["multiplier"], p["shift"], zp_folded)
    return spec


def _doubles(mode: int, lo: np.ndarray, hi: np.ndarray, multiplier) -> bool:
    """Whether a DSP kernel may accumulate 2 acc (TDK_Q_X2): on the fast path, with every live
    channel's |acc| < 2^30."""
    live = np.broadcast_to(np.asarray(multiplier, np.int64), lo.shape) != 0
    return bool(mode & Q_FAST) and bool(np.all(((lo >= -(1 << 30)) & (hi < (1 << 30))) | ~live))


def add_spec(graph, op, p: dict, base: str, profile) -> dict | None:
    """ADD of two same-shape tensors: each input's rescaled value ((x + offset) << 20, times its
    multiplier, rounded) is a table of 256 entries, so an element costs two loads and the output
    requantization (fast path only)."""
    a, b = (graph.tensors[n] for n in op.inputs[:2])
    if a.shape != b.shape:
        return None
    x = np.arange(-128, 128, dtype=np.int64)
    tables = [multiply_by_pot(saturating_rounding_doubling_high_mul(
        (x + p[f"{s}_offset"]) * (1 << p["left_shift"]), p[f"{s}_multiplier"]), p[f"{s}_shift"])
        for s in "ab"]
    lo = np.array([tables[0].min() + tables[1].min()])
    hi = np.array([tables[0].max() + tables[1].max()])
    mode = requant_mode(lo, hi, p["multiplier"], p["shift"], p["out_zero_point"], p["act"])
    if not mode & Q_FAST:
        return None
    # indexed by the input byte as unsigned: entries 0..127 for x >= 0, 128..255 for x < 0
    lut = np.concatenate([np.roll(t, -128) for t in tables]).astype(np.int32)
    record = requant_records(np.zeros(1, np.int64), p["multiplier"], p["shift"],
                             p["out_zero_point"] if mode & Q_ZP_IN_ROUNDING else 0)[0]
    spec = {"base": base, "lut": lut, "records": record}
    if _doubles(mode, lo, hi, p["multiplier"]):   # DSP: the tables doubled (see weighted_spec)
        mode |= Q_X2
        spec["dsp_lut"] = 2 * lut
    return {**spec, "name": f"{base}_q{mode}", "mode": mode}


def mean_spec(graph, op, p: dict, base: str, profile) -> dict | None:
    """MEAN with the shape as constants: the kept axes' loops outside, the reduced axes' inside
    (axes of extent 1 dropped), each (extent, stride); the sum starts at -zero point x count and
    is requantized by the fast path (when exact: sums of int8 are far from its limits)."""
    shape, reduce = p["in_shape"], p["reduce"]
    strides = [int(np.prod(shape[i + 1:])) for i in range(4)]
    kept = [(shape[i], strides[i]) for i in range(4) if not reduce[i] and shape[i] > 1]
    reduced = [(shape[i], strides[i]) for i in range(4) if reduce[i] and shape[i] > 1]
    bias = -p["in_zero_point"] * p["count"]
    lo, hi = np.array([bias - 128 * p["count"]]), np.array([bias + 127 * p["count"]])
    mode = requant_mode(lo, hi, p["multiplier"], p["shift"], p["out_zero_point"], INT8_RANGE)
    if not mode & Q_FAST:
        return None
    name = (f"{base}_{'x'.join(map(str, shape))}_r{''.join(str(int(r)) for r in reduce)}"
            f"_q{mode}_z{c_int(p['out_zero_point'])}")
    record = requant_records(np.array([bias]), p["multiplier"], p["shift"],
                             p["out_zero_point"] if mode & Q_ZP_IN_ROUNDING else 0)[0]
    return {"name": name, "base": base, "mode": mode, "zp": p["out_zero_point"], "kept": kept,
            "reduced": reduced, "records": record}


def transpose_spec(graph, op, p: dict, base: str, profile) -> dict:
    """TRANSPOSE with the shape as constants: per output axis of extent > 1, (extent, input
    stride in elements), outermost first."""
    axes = [(e, st) for e, st in zip(p["out_shape"], p["strides"]) if e > 1]
    name = f"{base}_{'_'.join(f'{e}s{st}' for e, st in axes)}_b{p['elem_bytes']}"
    return {"name": name, "base": base, "axes": axes, "elem_bytes": p["elem_bytes"]}


def pool_spec(graph, op, p: dict, base: str, profile) -> dict:
    (kh, kw), (sh, sw) = p["filter"], p["stride"]
    channels, is_max = p["in_shape"][3], op.kind == "max_pool2d"
    return {"name": f"{base}_{channels}_k{kh}x{kw}_s{sh}x{sw}_{'max' if is_max else 'avg'}", "base": base,
            "c": channels, "kh": kh, "kw": kw, "sh": sh, "sw": sw, "is_max": int(is_max)}


def dsp_gemm_weights(taps: np.ndarray) -> np.ndarray:
    """The GEMM filters for Cortex-M DSP (tdk_opt.h, TDK_DSP): int16, k padded with zeros to
    groups of 4 and the filter count to pairs; per pair of filters, group by group, 4 weights of
    the first filter then 4 of the second, each group in the order (w0, w2, w1, w3)."""
    oc, k = taps.shape
    padded = np.zeros((-(-oc // 2) * 2, -(-k // 4) * 4), np.int16)
    padded[:oc, :k] = taps
    groups = padded.reshape(padded.shape[0] // 2, 2, -1, 4)[..., [0, 2, 1, 3]]
    return groups.transpose(0, 2, 1, 3).reshape(-1)


def requant_records(folded: np.ndarray, multiplier, shift, zp_folded: int) -> np.ndarray:
    """Per output channel {folded bias, multiplier, r = -shift, 2^(r-1) (0 without a right
    shift) + zp_folded << r}: one record the optimized kernels load per channel. A dead channel
    (multiplier 0) gets r = 0: its output is the zero point whatever r."""
    multiplier = np.broadcast_to(np.asarray(multiplier, np.int64), folded.shape)
    right = np.where(multiplier == 0, 0, -np.broadcast_to(np.asarray(shift, np.int64), folded.shape))
    rounding = np.where(right >= 1, np.left_shift(1, np.maximum(right, 1) - 1), 0)
    rounding = rounding + (np.int64(zp_folded) << np.maximum(right, 0))
    return np.stack([folded, multiplier, right, rounding], axis=1).astype(np.int32)
