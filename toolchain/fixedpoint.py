"""Fixed-point arithmetic of TensorFlow Lite Micro's int8 kernels (gemmlowp "double rounding").

Every function works elementwise on numpy int64 arrays holding int32 values, so one
implementation serves scalars and whole tensors. The C kernels implement the same functions under
the same names (tdk_saturating_rounding_doubling_high_mul, tdk_rounding_divide_by_pot,
tdk_multiply_by_quantized_multiplier) in templates/kernels/tdk_kernels.h.j2; both are held to TFLM
by the tests.
"""
from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def tflite_round(x: float) -> int:
    """std::round: half away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """QuantizeMultiplier: real ~= q / 2^31 * 2^shift with q in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    mantissa, shift = math.frexp(real)
    q = tflite_round(mantissa * (1 << 31))
    if q == (1 << 31):
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return int(q), int(shift)


def quantize_multipliers(reals) -> tuple[np.ndarray, np.ndarray]:
    """quantize_multiplier over an array at once (int64 multipliers and shifts), bit-identical
    to it: frexp and the scaling by 2^31 are exact in float64, and so is |m| * 2^31 + 0.5 (a
    value below 2^32 keeps 21 bits of fraction), so the rounding is std::round's."""
    reals = np.asarray(reals, dtype=np.float64)
    mantissa, shift = np.frexp(reals)
    q = (np.floor(np.abs(mantissa) * float(1 << 31) + 0.5) * np.sign(mantissa)).astype(np.int64)
    shift = shift.astype(np.int64)
    full = q == (1 << 31)
    q, shift = np.where(full, q // 2, q), np.where(full, shift + 1, shift)
    tiny = (shift < -31) | (reals == 0.0)
    return np.where(tiny, 0, q), np.where(tiny, 0, shift)


def _c_div(a: np.ndarray, b: int) -> np.ndarray:
    """Integer division truncating toward zero, as C does."""
    q = np.abs(a) // b
    return np.where(a < 0, -q, q)


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    # ab + nudge can exceed int64 only when a == b == INT32_MIN, which is handled by overflow.
    high = _c_div(np.where(overflow, 0, ab) + nudge, 1 << 31)
    return np.where(overflow, INT32_MAX, high).astype(np.int64)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def wrap_int32(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """MultiplyByQuantizedMultiplier(int32 x, int32 q, int shift), double rounding."""
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = wrap_int32(np.asarray(x, dtype=np.int64) * (np.int64(1) << left))
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def saturating_left_shift(x, exponent: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingMultiplyByPOT with a positive exponent."""
    x = np.asarray(x, dtype=np.int64)
    threshold = (1 << (31 - exponent)) - 1
    shifted = wrap_int32(x << exponent)
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, shifted))


def multiply_by_pot(x, exponent: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingMultiplyByPOT for either sign of exponent."""
    if exponent > 0:
        return saturating_left_shift(x, exponent)
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    return np.asarray(x, dtype=np.int64)
