"""DEPTHWISE_CONV_2D: weights 1HWO (O = input channels x depth multiplier), per-channel int8
(TFLM's depthwise_conv.cc and depthwise_conv_common.cc)."""
from __future__ import annotations

import numpy as np

from . import kernel_spec
from ..lowering import conv_params, lowered
from .base import CBinding, Kernel, OpDef, TFLite, Weights
from .c import INPLACE_ARGS, SPATIAL_ARGS, conv_call
from .checks import check_conv
from .common import activate, float_bias, requantize, torch_activate
from .conv2d import WINDOW_FIELDS
from .window import geometry, input_region, pads, sliding_windows


def lower(graph, op) -> dict:
    p = conv_params(graph, op, 3)
    p["depth_multiplier"] = p["out_shape"][3] // p["in_shape"][3]
    return p


def reference(p, x, w, b=None):
    xs = x.astype(np.int64) + p["in_offset"]
    win = sliding_windows(xs, p, 0)
    win = np.repeat(win, p["depth_multiplier"], axis=3)  # N,OH,OW,O,KH,KW
    acc = np.einsum("nhwoij,ijo->nhwo", win, w[0].astype(np.int64))
    if b is not None:
        acc = acc + b.astype(np.int64)
    return requantize(acc, p)


def float_reference(graph, op, x, w, b=None):
    p = geometry(graph, op)
    win = sliding_windows(x.astype(np.float64), p, 0.0)
    win = np.repeat(win, w.shape[3] // x.shape[3], axis=3)  # depth multiplier
    acc = np.einsum("nhwoij,ijo->nhwo", win, w[0].astype(np.float64), optimize=True)
    return activate(op, acc + float_bias(b, w.shape[3]))


def macs(graph, op) -> int:
    w = graph.tensors[op.inputs[1]]
    return graph.tensors[op.outputs[0]].size * w.shape[1] * w.shape[2]


def torch(torch, call, x):
    p = call.geometry
    xc = torch.nn.functional.pad(x.permute(0, 3, 1, 2), pads(p))
    y = torch.nn.functional.conv2d(xc, call.weight.permute(3, 0, 1, 2), call.bias, p["stride"], 0, p["dilation"],
                                   groups=xc.shape[1])
    return torch_activate(torch, call.op, y.permute(0, 2, 3, 1))


def inplace(graph, op, dies):
    """Depth multiplier 1, batch 1, over a dying input: channel by channel in place."""
    if dies(op.inputs[0]) and lowered(graph, op, lower)["depth_multiplier"] == 1 and graph.tensors[op.outputs[0]].shape[0] == 1:
        return "depthwise", op.inputs[0]
    return None


def variant(graph, op, inplace):
    return "depthwise_conv2d_inplace" if inplace == "depthwise" else "depthwise_conv2d"


def temp_bytes(graph, op, inplace) -> int:
    """The portable in-place kernel keeps one input channel plane aside."""
    if inplace != "depthwise":
        return 0
    _, h, w, _ = graph.tensors[op.inputs[0]].shape
    return h * w


def depth_multiplier(op, shape_of) -> dict:
    return {"DepthMultiplier": shape_of(op.outputs[0])[3] // shape_of(op.inputs[0])[3]}


DEFINITION = OpDef(
    "depthwise_conv2d", lower, reference, float_reference, torch,
    TFLite(("DEPTHWISE_CONV_2D",), "DepthwiseConv2DOptions", (1, 3), WINDOW_FIELDS,
           ("Padding", "StrideW", "StrideH", "DepthMultiplier", "FusedActivationFunction", "DilationWFactor",
            "DilationHFactor"), data_inputs=3, write_extra=depth_multiplier),
    CBinding((Kernel("depthwise_conv2d", "depthwise_conv2d", SPATIAL_ARGS, view=True),
              Kernel("depthwise_conv2d_inplace", "depthwise_conv2d", INPLACE_ARGS)),
             lambda c, op, p, v: conv_call(c, op, p, v, p["depth_multiplier"]), variant, kernel_spec.weighted_spec,
             kernel_spec.weighted_work_bytes, temp_bytes),
    macs=macs, weights=Weights(3, 3, None), window=True, input_region=input_region, narrow_input=True,
    fuses_activation=True, channels="follow", inplace=inplace, arity=(2, 3),
    check=lambda graph, op, where: check_conv(graph, op, where, depthwise=True))
