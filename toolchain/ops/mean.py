"""MEAN over some axes, int8 (TFLM's reduce.cc, QuantizedMeanOrSum)."""
from __future__ import annotations

import math

import numpy as np

from .. import fixedpoint as fp
from . import kernel_spec
from ..errors import UserError
from ..fixedpoint import quantize_multiplier
from ..lowering import f32, out_shape4, require_int8
from .base import CBinding, Field, Kernel, OpDef, TFLite
from .c import OpCall, io_refs
from .checks import axis_list, expect, shapes
from .common import clamp


def lower(graph, op) -> dict:
    require_int8(graph, op)
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
            "in_zero_point": inp.zero_point(), "out_zero_point": out.zero_point(),
            "multiplier": int(mult), "shift": int(shift - extra)}


def reference(p, x):
    x4 = x.reshape(p["in_shape"]).astype(np.int64)
    axes = tuple(i for i, r in enumerate(p["reduce"]) if r)
    total = x4.sum(axis=axes, keepdims=True) - p["in_zero_point"] * p["count"]
    y = fp.multiply_by_quantized_multiplier(fp.wrap_int32(total), p["multiplier"], p["shift"])
    return clamp(y + p["out_zero_point"], (-128, 127))


def float_reference(graph, op, x):
    axes = tuple(a % x.ndim for a in op.attrs["axes"])
    return x.astype(np.float64).mean(axis=axes, keepdims=op.attrs.get("keep_dims", False))


def torch(torch, call, x):
    return x.mean(dim=[a % x.dim() for a in call.op.attrs["axes"]], keepdim=call.op.attrs.get("keep_dims", False))


def call(c, op, p, variant):
    (x,), y = io_refs(c, op)
    params = {"in_shape": p["in_shape"], "reduce": p["reduce"], "count": p["count"],
              "in_zero_point": p["in_zero_point"], "out_offset": p["out_zero_point"],
              "multiplier": p["multiplier"], "shift": p["shift"]}
    return OpCall(variant, "tdk_mean_params_t", params, [x, y])


def check(graph, op, where: str) -> None:
    (x,), out = shapes(graph, op)
    axes = set(axis_list(op, "axes", len(x), where))
    if op.attrs.get("keep_dims"):
        want = tuple(1 if i in axes else d for i, d in enumerate(x))
        expect(where, out, want)
    elif math.prod(out) != math.prod(d for i, d in enumerate(x) if i not in axes):
        raise UserError(f"{where}: output shape {list(out)} does not hold the mean of {list(x)} over {sorted(axes)}")


DEFINITION = OpDef(
    "mean", lower, reference, float_reference, torch,
    TFLite(("MEAN",), "ReducerOptions", (1, 2), {"keep_dims": Field("KeepDims", "bool", False)}, ("KeepDims",),
           read_params=lambda builtin, inputs, constant, where: {
               "axes": tuple(int(a) for a in constant(1, "axes").reshape(-1))},
           write_params=lambda op, out: [("axes", op.attrs["axes"])]),
    CBinding((Kernel("mean", "mean", "const tdk_mean_params_t *p, const int8_t *in, int8_t *out"),), call,
             spec=kernel_spec.mean_spec),
    macs=lambda graph, op: graph.tensors[op.inputs[0]].size, narrow_input=True, channels="reduce", check=check)
