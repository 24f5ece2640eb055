"""SOFTMAX over the last axis, int8 in, int8 out on the grid TFLM requires (scale 1/256, zero
point -128), with gemmlowp's fixed-point exp and reciprocal (TFLM's softmax.cc)."""
from __future__ import annotations

import math

import numpy as np

from .. import fixedpoint as fp
from ..errors import UserError
from ..fixedpoint import quantize_multiplier
from ..lowering import f32, require_int8
from .base import CBinding, Field, Kernel, OpDef, TFLite
from .c import struct_call
from .checks import same_shape


def lower(graph, op) -> dict:
    require_int8(graph, op)
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if out.zero_point() != -128 or f32(out.scale()) != f32(1.0 / 256):
        raise UserError(f"op {op.name}: int8 softmax needs output scale 1/256 and zero point -128")
    integer_bits = 5
    real = min(float(op.attrs.get("beta", 1.0)) * float(f32(inp.scale())) * (1 << (31 - integer_bits)),
               (1 << 31) - 1.0)
    if real <= 1.0:   # TFLM's PreprocessSoftmaxScaling: QuantizeMultiplierGreaterThanOne
        raise UserError(f"op {op.name}: softmax input scale {float(f32(inp.scale())):.3g} (beta "
                        f"{float(op.attrs.get('beta', 1.0)):g}) is below what int8 softmax can rescale "
                        f"(beta x scale x 2^26 must exceed 1): requantize the softmax input")
    mult, left_shift = quantize_multiplier(real)
    radius = math.floor(((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) / (1 << left_shift))
    return {"depth": inp.shape[-1], "outer": inp.size // inp.shape[-1],
            "multiplier": mult, "left_shift": left_shift, "diff_min": -radius}


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


def _exps(p, x):
    """Per row: which classes count (diff >= diff_min), exp(diff) in Q0.31, and the sum of exps in Q12.19."""
    rows = x.reshape(p["outer"], p["depth"]).astype(np.int64)
    diff = rows - rows.max(axis=1, keepdims=True)
    use = diff >= p["diff_min"]
    scaled = fp.saturating_rounding_doubling_high_mul(fp.wrap_int32(diff * (1 << p["left_shift"])),
                                                       p["multiplier"])
    exps = _exp_on_negative_values(scaled)
    sums = np.where(use, fp.rounding_divide_by_pot(exps, 12), 0).sum(axis=1)
    return use, exps, sums


def beyond_tflm(p, x) -> bool:
    """Whether TFLM asserts on this input: a sum of exps of more than 28 bits (over 512 classes
    near the row's maximum) makes its final RoundingDivideByPOT exponent exceed 31. The reference
    and the C take that division in 64 bits (every output rounds to the bottom of the range)."""
    _, _, sums = _exps(p, x)
    return any((int(total) & 0xFFFFFFFF).bit_length() > 28 for total in sums)


def reference(p, x):
    use, exps, sums = _exps(p, x)
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


def float_reference(graph, op, x):
    z = x.astype(np.float64) * op.attrs.get("beta", 1.0)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def check(graph, op, where: str) -> None:
    same_shape(graph, op, where)
    beta = op.attrs.get("beta", 1.0)
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
        raise UserError(f"{where}: beta {beta!r} must be finite and positive")


DEFINITION = OpDef(
    "softmax", lower, reference, float_reference,
    lambda torch, call, x: torch.softmax(x * call.op.attrs.get("beta", 1.0), dim=-1),
    TFLite(("SOFTMAX",), "SoftmaxOptions", (1, 2), {"beta": Field("Beta", "float", 1.0)}, ("Beta",)),
    CBinding((Kernel("softmax", "softmax", "const tdk_softmax_params_t *p, const int8_t *in, int8_t *out"),),
             struct_call("tdk_softmax_params_t")),
    macs=lambda graph, op: graph.tensors[op.outputs[0]].size, grid="fixed",
    fixed_grid=(float(np.float32(1.0 / 256)), -128), beyond_tflm=beyond_tflm, check=check)
