"""RELU and RELU6 as ops of their own (fused into their producer where it can clamp: importers)."""
from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from ..fixedpoint import quantize_multiplier, tflite_round
from ..lowering import QRANGE, f32, require_int8
from .base import CBinding, Kernel, OpDef, TFLite
from .c import ELEMENTWISE_ARGS, elementwise_call, elementwise_params
from .common import clamp


def lower_relu(graph, op) -> dict:
    require_int8(graph, op)
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    m, s = quantize_multiplier(float(f32(inp.scale()) / f32(out.scale())))
    qmin, qmax = QRANGE[out.dtype]
    return {"count": out.size, "in_zero_point": inp.zero_point(), "out_zero_point": out.zero_point(),
            "multiplier": m, "shift": s,
            "act": (max(qmin, out.zero_point() + tflite_round(0.0)), qmax)}


def lower_relu6(graph, op) -> dict:
    require_int8(graph, op)
    inp = graph.tensors[op.inputs[0]]
    six = tflite_round(float(f32(6.0) / f32(inp.scale()))) + inp.zero_point()
    return {"count": inp.size, "act": (inp.zero_point(), max(-128, min(127, six)))}


def reference_relu(p, x):
    y = fp.multiply_by_quantized_multiplier(x.astype(np.int64) - p["in_zero_point"],
                                            p["multiplier"], p["shift"])
    return clamp(y + p["out_zero_point"], p["act"])


RELU = OpDef(
    "relu", lower_relu, reference_relu, lambda graph, op, x: np.maximum(x, 0.0),
    lambda torch, call, x: torch.nn.functional.relu(x), TFLite(("RELU",), None, (1, 2)),
    CBinding((Kernel("relu", "relu", ELEMENTWISE_ARGS),), elementwise_call(lambda p: elementwise_params(
        p["count"], p["out_zero_point"], p["in_zero_point"], p["multiplier"], p["shift"], p["act"]))),
    narrow_input=True, channels="carry")

RELU6 = OpDef(
    "relu6", lower_relu6, lambda p, x: clamp(x.astype(np.int64), p["act"]), lambda graph, op, x: np.clip(x, 0.0, 6.0),
    lambda torch, call, x: torch.clamp(x, 0.0, 6.0), TFLite(("RELU6",), None, (1, 2)),
    CBinding((Kernel("relu6", "relu6", ELEMENTWISE_ARGS),),
             elementwise_call(lambda p: elementwise_params(p["count"], act=p["act"]))),
    grid="input", narrow_input=True, channels="carry")

DEFINITIONS = (RELU, RELU6)
