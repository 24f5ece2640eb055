"""What the op definitions' `check` functions share: the shape and attribute facts the IR checks
(toolchain/validate.py) state once per op kind, each failure naming the op."""
from __future__ import annotations

import math

import numpy as np

from ..errors import UserError, quoted

INTEGER_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767),
                 "int32": (-(1 << 31), (1 << 31) - 1), "int64": (-(1 << 63), (1 << 63) - 1)}


def shapes(graph, op):
    return [graph.tensors[n].shape for n in op.inputs], graph.tensors[op.outputs[0]].shape


def expect(where: str, got, want, what: str = "output shape") -> None:
    if tuple(got) != tuple(want):
        raise UserError(f"{where}: {what} {list(got)}, the op computes {list(want)}")


def pair(op, key: str, where: str, low: int = 1, default=None) -> tuple[int, int]:
    value = op.attrs.get(key, default)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, (int, np.integer)) and low <= v <= 1 << 16 for v in value)):
        raise UserError(f"{where}: {key} {value!r} must be two integers in {low}..65536")
    return int(value[0]), int(value[1])


def window_out(where: str, op, in_hw, kernel, stride, dilation) -> tuple[int, int]:
    padding = op.attrs.get("padding")
    if padding not in ("same", "valid"):
        raise UserError(f"{where}: padding {padding!r} is neither same nor valid")
    out = []
    for size, k, s, d in zip(in_hw, kernel, stride, dilation):
        effective = (k - 1) * d + 1
        if padding == "same":
            out.append(-(-size // s))
        elif size < effective:
            raise UserError(f"{where}: a {k}-wide window (dilation {d}) does not fit the input's {size}")
        else:
            out.append((size - effective) // s + 1)
    return tuple(out)


def expect_rank(where: str, shape, rank: int, what: str) -> None:
    if len(shape) != rank:
        raise UserError(f"{where}: {what} has shape {list(shape)}, expected rank {rank}")


def const(graph, op, position: int, where: str, what: str):
    t = graph.tensors[op.inputs[position]]
    if not t.is_const:
        raise UserError(f"{where}: {what} {quoted(t.name)} must be a constant")
    return t


def bias(graph, op, channels: int, where: str) -> None:
    if len(op.inputs) > 2:
        expect(where, const(graph, op, 2, where, "the bias").shape, (channels,), "bias shape")


def axis_list(op, key: str, rank: int, where: str) -> list[int]:
    axes = op.attrs.get(key)
    if not isinstance(axes, (tuple, list)) or not all(isinstance(a, (int, np.integer)) for a in axes):
        raise UserError(f"{where}: {key} {axes!r} must be a list of integers")
    if any(not -rank <= a < rank for a in axes):
        raise UserError(f"{where}: {key} {list(axes)} out of range for a rank-{rank} input")
    return [int(a) % rank for a in axes]


def check_conv(graph, op, where: str, depthwise: bool = False) -> None:
    (x, w, *_), out = shapes(graph, op)
    const(graph, op, 1, where, "the weights")
    expect_rank(where, x, 4, "the input")
    expect_rank(where, w, 4, "the weights")
    if graph.tensors[op.inputs[0]].is_const:
        raise UserError(f"{where}: the input must not be a constant")
    stride, dilation = pair(op, "stride", where), pair(op, "dilation", where, default=(1, 1))
    if depthwise:
        if w[0] != 1 or w[3] % x[3]:
            raise UserError(f"{where}: depthwise weights {list(w)} do not fit {x[3]} input channels "
                            f"(expected 1 x KH x KW x a multiple of {x[3]})")
    elif w[3] != x[3]:
        raise UserError(f"{where}: weights {list(w)} take {w[3]} input channels, the input has {x[3]}")
    channels = w[3] if depthwise else w[0]
    hw = window_out(where, op, x[1:3], w[1:3], stride, dilation)
    expect(where, out, (x[0],) + hw + (channels,))
    bias(graph, op, channels, where)


def same_shape(graph, op, where: str) -> None:
    (x,), out = shapes(graph, op)
    expect(where, out, x)
