"""AVERAGE_POOL_2D and MAX_POOL_2D: int8 in and out on the input's grid (TFLM's pooling.cc)."""
from __future__ import annotations

import numpy as np

from . import kernel_spec
from ..lowering import activation_range, require_int8, spatial_geometry
from .base import CBinding, Field, Kernel, OpDef, TFLite
from .c import OpCall, io_refs, spatial_params
from .checks import expect, expect_rank, pair, shapes, window_out
from .common import ACTIVATION, activate, clamp, torch_activate
from .window import input_region, pads, sliding_windows

POOL_KERNEL = Kernel("pool2d", "pool2d",
                     "const tdk_spatial_params_t *p, const tdk_view_t *v, int is_max, const int8_t *in, int8_t *out",
                     view=True)
FIELDS = {"filter": Field(("FilterHeight", "FilterWidth")), "stride": Field(("StrideH", "StrideW")),
          "padding": Field("Padding", "padding"), **ACTIVATION}
ORDER = ("Padding", "StrideW", "StrideH", "FilterWidth", "FilterHeight", "FusedActivationFunction")


def lower(graph, op) -> dict:
    require_int8(graph, op)
    fh, fw = op.attrs["filter"]
    p = spatial_geometry(graph, op, fh, fw)
    p["act"] = activation_range(op.attrs.get("activation"), graph.tensors[op.outputs[0]])
    return p


def reference_avg(p, x):
    win = sliding_windows(x.astype(np.int64), p, 0)
    valid = sliding_windows(np.ones(x.shape[:3] + (1,), np.int64), p, 0)
    total = win.sum(axis=(-2, -1))
    count = valid.sum(axis=(-2, -1))
    avg = np.where(total > 0, total + count // 2, total - count // 2)
    avg = np.sign(avg) * (np.abs(avg) // count)  # C division truncates toward zero
    return clamp(avg, p["act"])


def reference_max(p, x):
    win = sliding_windows(x.astype(np.int64), p, -(1 << 40))
    return clamp(win.max(axis=(-2, -1)), p["act"])


def float_avg(graph, op, x):
    """Padding is not counted: the sum over the valid part of each window over its size."""
    p = spatial_geometry(graph, op, *op.attrs["filter"])
    total = sliding_windows(x.astype(np.float64), p, 0.0).sum(axis=(-2, -1))
    count = sliding_windows(np.ones(x.shape[:3] + (1,)), p, 0.0).sum(axis=(-2, -1))
    return activate(op, total / count)


def float_max(graph, op, x):
    p = spatial_geometry(graph, op, *op.attrs["filter"])
    return activate(op, sliding_windows(x.astype(np.float64), p, -np.inf).max(axis=(-2, -1)))


def torch_avg(torch, call, x):
    p, F = call.geometry, torch.nn.functional
    xc = x.permute(0, 3, 1, 2)
    ones = torch.ones_like(xc[:, :1])
    total = F.avg_pool2d(F.pad(xc, pads(p)), p["filter"], p["stride"], divisor_override=1)
    count = F.avg_pool2d(F.pad(ones, pads(p)), p["filter"], p["stride"], divisor_override=1)
    return torch_activate(torch, call.op, (total / count).permute(0, 2, 3, 1))


def torch_max(torch, call, x):
    p, F = call.geometry, torch.nn.functional
    y = F.max_pool2d(F.pad(x.permute(0, 3, 1, 2), pads(p), value=-np.inf), p["filter"], p["stride"])
    return torch_activate(torch, call.op, y.permute(0, 2, 3, 1))


def macs(graph, op) -> int:
    return graph.tensors[op.outputs[0]].size * op.attrs["filter"][0] * op.attrs["filter"][1]


def check(graph, op, where: str) -> None:
    (x,), out = shapes(graph, op)
    expect_rank(where, x, 4, "the input")
    kernel, stride = pair(op, "filter", where), pair(op, "stride", where)
    expect(where, out, (x[0],) + window_out(where, op, x[1:3], kernel, stride, (1, 1)) + (x[3],))


def call(is_max: str):
    def make(c, op, p, variant):
        (x,), y = io_refs(c, op)
        return OpCall(variant, "tdk_spatial_params_t", spatial_params(p), [is_max, x, y])
    return make


def pool(kind: str, builtin: str, reference, float_reference, torch, is_max: str) -> OpDef:
    return OpDef(
        kind, lower, reference, float_reference, torch, TFLite((builtin,), "Pool2DOptions", (1, 2), FIELDS, ORDER),
        CBinding((POOL_KERNEL,), call(is_max), spec=kernel_spec.pool_spec),
        macs=macs, window=True, input_region=input_region, grid="input", narrow_input=True,
        fuses_activation=True, channels="carry", check=check)


DEFINITIONS = (pool("avg_pool2d", "AVERAGE_POOL_2D", reference_avg, float_avg, torch_avg, "0"),
               pool("max_pool2d", "MAX_POOL_2D", reference_max, float_max, torch_max, "1"))
