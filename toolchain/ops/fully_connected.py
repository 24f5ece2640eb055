"""FULLY_CONNECTED: weights OI, per-tensor or per-channel int8 (TFLM's fully_connected.cc)."""
from __future__ import annotations

import math

import numpy as np

from . import kernel_spec
from ..fixedpoint import quantize_multiplier
from ..errors import UserError
from ..lowering import activation_range, f32, per_channel_multipliers, require_int8
from .base import CBinding, Kernel, OpDef, TFLite, Weights
from .c import OpCall, io_refs
from .checks import bias, const, expect_rank, shapes
from .common import ACTIVATION, activate, float_bias, requantize, torch_activate


def lower(graph, op) -> dict:
    require_int8(graph, op)
    inp, w, out = (graph.tensors[n] for n in (op.inputs[0], op.inputs[1], op.outputs[0]))
    units, depth = w.shape
    if w.quant.per_channel:
        mult, shift = per_channel_multipliers(inp, w, out, units)
    else:
        # GetQuantizedConvolutionMultipler: the product of scales is taken in float32.
        product = float(f32(inp.scale()) * f32(w.scale()))
        m, s = quantize_multiplier(product / float(f32(out.scale())))
        mult, shift = np.array([m], np.int64), np.array([s], np.int64)
    return {"batches": inp.size // depth, "depth": depth, "units": units,
            "in_offset": -inp.zero_point(), "filter_offset": -int(w.quant.zero_point.reshape(-1)[0]),
            "out_zero_point": out.zero_point(), "multiplier": mult, "shift": shift,
            "act": activation_range(op.attrs.get("activation"), out)}


def reference(p, x, w, b=None):
    xs = x.reshape(p["batches"], p["depth"]).astype(np.int64) + p["in_offset"]
    ws = w.astype(np.int64) + p["filter_offset"]
    acc = xs @ ws.T
    if b is not None:
        acc = acc + b.astype(np.int64)
    return requantize(acc, p)


def float_reference(graph, op, x, w, b=None):
    acc = x.reshape(-1, w.shape[1]).astype(np.float64) @ w.astype(np.float64).T
    return activate(op, acc + float_bias(b, w.shape[0]))


def macs(graph, op) -> int:
    return graph.tensors[op.outputs[0]].size * graph.tensors[op.inputs[1]].shape[1]


def torch(torch, call, x):
    return torch_activate(torch, call.op, torch.nn.functional.linear(x.reshape(x.shape[0], -1), call.weight, call.bias))


def call(c, op, p, variant):
    (x,), y = io_refs(c, op)
    params = {k: p[k] for k in ("batches", "depth", "units")}
    params.update(per_channel=int(len(p["multiplier"]) > 1), in_offset=p["in_offset"],
                  filter_offset=p["filter_offset"], out_offset=p["out_zero_point"],
                  act_min=p["act"][0], act_max=p["act"][1])
    args = [x, c.const(op.inputs[1]), c.bias_ref(op), c.array("int32_t", p["multiplier"]),
            c.array("int32_t", p["shift"]), y]
    return OpCall(variant, "tdk_fc_params_t", params, args)


def check(graph, op, where: str) -> None:
    (x, w, *_), out = shapes(graph, op)
    const(graph, op, 1, where, "the weights")
    expect_rank(where, w, 2, "the weights")
    units, depth = w
    size = math.prod(x)
    if size % depth:
        raise UserError(f"{where}: input {list(x)} ({size} values) is not a whole number of rows of {depth}")
    if math.prod(out) != size // depth * units or not out or out[-1] != units:
        raise UserError(f"{where}: output shape {list(out)}, the op computes {size // depth} rows of {units}")
    bias(graph, op, units, where)


DEFINITION = OpDef(
    "fully_connected", lower, reference, float_reference, torch,
    TFLite(("FULLY_CONNECTED",), "FullyConnectedOptions", (1, 4), ACTIVATION, ("FusedActivationFunction",),
           data_inputs=3),
    CBinding((Kernel("fully_connected", "fully_connected",
                     "const tdk_fc_params_t *p, const int8_t *in, const int8_t *w, const int32_t *bias, "
                     "const int32_t *mult, const int32_t *shift, int8_t *out"),),
             call, spec=kernel_spec.weighted_spec, work_bytes=kernel_spec.weighted_work_bytes),
    macs=macs, weights=Weights(None, 0, 1), narrow_input=True, fuses_activation=True, channels="create",
    arity=(2, 3), check=check)
