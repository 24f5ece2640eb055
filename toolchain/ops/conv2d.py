"""CONV_2D: weights OHWI, per-channel int8 (TFLM's conv.cc and conv_common.cc)."""
from __future__ import annotations

import numpy as np

from . import kernel_spec
from ..lowering import conv_params, lowered
from .base import CBinding, Field, Kernel, OpDef, TFLite, Weights
from .c import INPLACE_ARGS, SPATIAL_ARGS, conv_call
from .checks import check_conv
from .common import ACTIVATION, activate, float_bias, requantize, torch_activate
from .window import geometry, input_region, pads, sliding_windows

WINDOW_FIELDS = {"stride": Field(("StrideH", "StrideW")), "padding": Field("Padding", "padding"),
                 "dilation": Field(("DilationHFactor", "DilationWFactor"), default=(1, 1)), **ACTIVATION}
WINDOW_ORDER = ("Padding", "StrideW", "StrideH", "FusedActivationFunction", "DilationWFactor", "DilationHFactor")


def lower(graph, op) -> dict:
    return conv_params(graph, op, 0)


def reference(p, x, w, b=None):
    xs = x.astype(np.int64) + p["in_offset"]
    win = sliding_windows(xs, p, 0)  # N,OH,OW,C,KH,KW ; padding contributes nothing
    acc = np.einsum("nhwcij,oijc->nhwo", win.astype(np.float64), w.astype(np.float64), optimize=True)
    acc = np.rint(acc).astype(np.int64)
    if b is not None:
        acc = acc + b.astype(np.int64)
    return requantize(acc, p)


def float_reference(graph, op, x, w, b=None):
    p = geometry(graph, op)
    win = sliding_windows(x.astype(np.float64), p, 0.0)  # N,OH,OW,C,KH,KW
    acc = np.einsum("nhwcij,oijc->nhwo", win, w.astype(np.float64), optimize=True)
    return activate(op, acc + float_bias(b, w.shape[0]))


def macs(graph, op) -> int:
    w = graph.tensors[op.inputs[1]]
    return graph.tensors[op.outputs[0]].size * int(np.prod(w.shape[1:]))


def torch(torch, call, x):
    p = call.geometry
    xc = torch.nn.functional.pad(x.permute(0, 3, 1, 2), pads(p))
    y = torch.nn.functional.conv2d(xc, call.weight.permute(0, 3, 1, 2), call.bias, p["stride"], 0, p["dilation"])
    return torch_activate(torch, call.op, y.permute(0, 2, 3, 1))


def inplace(graph, op, dies):
    """A 1x1, stride-1 conv over a dying input of its own height and width: pointwise, row by row."""
    if not dies(op.inputs[0]):
        return None
    p = lowered(graph, op, lower)
    if (p["filter"] == (1, 1) and p["stride"] == (1, 1) and p["pad"] == (0, 0)
            and p["in_shape"][1:3] == p["out_shape"][1:3]):
        return "pointwise", op.inputs[0]
    return None


def variant(graph, op, inplace):
    return "conv2d_pointwise_inplace" if inplace == "pointwise" else "conv2d"


def temp_bytes(graph, op, inplace) -> int:
    """The portable pointwise kernel keeps one output pixel's channels aside."""
    return graph.tensors[op.outputs[0]].shape[-1] if inplace == "pointwise" else 0


DEFINITION = OpDef(
    "conv2d", lower, reference, float_reference, torch,
    TFLite(("CONV_2D",), "Conv2DOptions", (1, 3), WINDOW_FIELDS, WINDOW_ORDER, data_inputs=3),
    CBinding((Kernel("conv2d", "conv2d", SPATIAL_ARGS, view=True),
              Kernel("conv2d_pointwise_inplace", "conv2d", INPLACE_ARGS)),
             lambda c, op, p, v: conv_call(c, op, p, v, 1), variant, kernel_spec.weighted_spec,
             kernel_spec.weighted_work_bytes, temp_bytes),
    macs=macs, weights=Weights(0, 0, 3), window=True, input_region=input_region, narrow_input=True,
    fuses_activation=True, channels="create", inplace=inplace, arity=(2, 3), check=check_conv)
