"""Sub-8-bit weights: the value range of each bit width and how values are packed into bytes.

A weight tensor with QuantParams.bits = 4 or 2 holds int8 values inside the range of that
width (two's complement), so the reference executor computes with it unchanged. The C project
stores it packed: value i in bits [(i % per_byte) * bits, ...) of byte i // per_byte, low bits
first (per_byte = 8 // bits), the last byte padded with zeros; tdk_unpack_weights
(templates/kernels/tdk_kernels.h.j2) is the inverse.
"""
from __future__ import annotations

import numpy as np

from .ops import op_def

WEIGHT_BITS = (8, 4, 2)


def weight_range(bits: int) -> tuple[int, int]:
    """The two's complement range of `bits` bits (int8: TFLite's [-127, 127]; 4: [-8, 7]; 2: [-2, 1])."""
    if bits not in WEIGHT_BITS:
        raise ValueError(f"weight bit width {bits}: supported are {', '.join(map(str, WEIGHT_BITS))}")
    return (-127, 127) if bits == 8 else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def packed_bytes(count: int, bits: int) -> int:
    return -(-count * bits // 8)


def pack_weights(values: np.ndarray, bits: int) -> np.ndarray:
    """int values (any shape, read in C order) -> uint8 bytes, `8 // bits` values per byte."""
    flat = np.asarray(values).reshape(-1).astype(np.int64)
    lo, hi = weight_range(bits)
    if flat.size and (flat.min() < lo or flat.max() > hi):
        raise ValueError(f"{bits}-bit weights must lie in [{lo}, {hi}], got [{flat.min()}, {flat.max()}]")
    per_byte = 8 // bits
    fields = flat & ((1 << bits) - 1)
    fields = np.concatenate([fields, np.zeros(-flat.size % per_byte, np.int64)]).reshape(-1, per_byte)
    return (fields << (np.arange(per_byte) * bits)).sum(axis=1).astype(np.uint8)


def unpack_weights(packed: np.ndarray, count: int, bits: int) -> np.ndarray:
    """The inverse of pack_weights: the first `count` values, as int8."""
    per_byte = 8 // bits
    fields = (np.asarray(packed, np.int64)[:, None] >> (np.arange(per_byte) * bits)) & ((1 << bits) - 1)
    fields = fields.reshape(-1)[:count]
    return (fields - ((fields >> (bits - 1)) << bits)).astype(np.int8)


def unpacked_bytes(graph, op) -> int:
    """Bytes of the arena scratch an op with sub-8-bit weights unpacks them into (0 for int8
    weights): the widest layout a C kernel reads them in, int8 in IR order, or for conv and
    fully connected on Cortex-M DSP the GEMM's int16 filters, padded to pairs of filters and
    groups of 4 weights (toolchain/ops/kernel_spec.py, dsp_gemm_weights)."""
    weights = op_def(op.kind).weights
    if weights is None:
        return 0
    t = graph.tensors[op.inputs[1]]
    if t.quant is None or t.quant.bits == 8:
        return 0
    if not weights.gemm:
        return t.size
    filters, k = t.shape[0], t.size // t.shape[0]
    return max(t.size, 2 * (-(-filters // 2) * 2) * (-(-k // 4) * 4))
