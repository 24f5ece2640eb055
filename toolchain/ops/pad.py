"""PAD / PADV2 with constant paddings: the value is the output's zero point (int8) unless PADV2
names one (TFLM's pad.cc)."""
from __future__ import annotations

import numpy as np

from ..errors import UserError
from ..lowering import out_shape4
from .base import CBinding, Kernel, OpDef, TFLite
from .c import struct_call
from .checks import INTEGER_RANGE, expect, shapes


def lower(graph, op) -> dict:
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    lead = 4 - len(inp.shape)
    paddings = ((0, 0),) * lead + tuple(op.attrs["paddings"])
    value = op.attrs.get("pad_value", out.zero_point() if out.quant is not None else 0)
    return {"in_shape": out_shape4(inp.shape), "out_shape": out_shape4(out.shape),
            "before": tuple(a for a, _ in paddings), "value": int(value)}


def reference(p, x):
    x4 = x.reshape(p["in_shape"])
    widths = [(b, o - i - b) for b, i, o in zip(p["before"], p["in_shape"], p["out_shape"])]
    return np.pad(x4, widths, constant_values=p["value"]).astype(x.dtype)


def float_reference(graph, op, x):
    return np.pad(x, op.attrs["paddings"], constant_values=op.attrs.get("pad_value", 0.0))


def torch(torch, call, x):
    widths = [w for pair in reversed(call.op.attrs["paddings"]) for w in pair]
    return torch.nn.functional.pad(x, widths)


def read_params(builtin, inputs, constant, where) -> dict:
    paddings = constant(1, "paddings")
    if paddings.size % 2:
        raise UserError(f"{where}: paddings must be (before, after) pairs, got {paddings.size} values")
    attrs = {"paddings": tuple((int(a), int(b)) for a, b in paddings.reshape(-1, 2))}
    if builtin == "PADV2" and len(inputs) > 2 and inputs[2] is not None:
        value = constant(2, "pad value")
        if value.size != 1:
            raise UserError(f"{where}: the pad value must be one number, got {value.size}")
        attrs["pad_value"] = int(value.reshape(-1)[0])
    return attrs


def check(graph, op, where: str) -> None:
    (x,), out = shapes(graph, op)
    paddings = op.attrs.get("paddings")
    if (not isinstance(paddings, (tuple, list)) or len(paddings) != len(x)
            or not all(len(p) == 2 and all(isinstance(v, (int, np.integer)) and 0 <= v <= 1 << 16 for v in p)
                       for p in paddings)):
        raise UserError(f"{where}: paddings {paddings!r} must be {len(x)} pairs of non-negative integers")
    expect(where, out, tuple(d + a + b for d, (a, b) in zip(x, paddings)))
    dtype = graph.tensors[op.inputs[0]].dtype
    if "pad_value" in op.attrs and dtype in INTEGER_RANGE:
        lo, hi = INTEGER_RANGE[dtype]
        if not lo <= op.attrs["pad_value"] <= hi:
            raise UserError(f"{where}: pad value {op.attrs['pad_value']} outside the {dtype} range")


DEFINITION = OpDef(
    "pad", lower, reference, float_reference, torch,
    TFLite(("PAD", "PADV2"), "PadOptions", (1, 2), read_params=read_params,
           write_params=lambda op, out: [("paddings", op.attrs["paddings"])]),
    CBinding((Kernel("pad", "pad", "const tdk_pad_params_t *p, const int8_t *in, int8_t *out"),),
             struct_call("tdk_pad_params_t")),
    grid="input", narrow_input=True, channels="carry", check=check)
