"""LEAKY_RELU: x for x >= 0, alpha * x below, int8 in and out, each side requantized with its own
multiplier (TFLM's leaky_relu.cc and reference_ops::QuantizeLeakyRelu)."""
from __future__ import annotations

import math

import numpy as np

from .. import fixedpoint as fp
from ..errors import UserError
from ..fixedpoint import quantize_multiplier
from ..lowering import f32, require_int8
from .base import CBinding, Field, Kernel, OpDef, TFLite
from .c import struct_call
from .checks import same_shape
from .common import clamp

PARAMS = ("typedef struct {\n  int32_t count, in_zero_point, out_zero_point;\n"
          "  int32_t identity_multiplier, identity_shift, alpha_multiplier, alpha_shift;\n"
          "} tdk_leaky_relu_params_t;")


def lower(graph, op) -> dict:
    require_int8(graph, op)
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    # CalculateOpDataLeakyRelu: the scales' products and quotients in float32, then as double
    alpha = quantize_multiplier(float(f32(f32(inp.scale()) * f32(op.attrs["alpha"])) / f32(out.scale())))
    identity = quantize_multiplier(float(f32(inp.scale()) / f32(out.scale())))
    return {"count": inp.size, "in_zero_point": inp.zero_point(), "out_zero_point": out.zero_point(),
            "identity_multiplier": identity[0], "identity_shift": identity[1],
            "alpha_multiplier": alpha[0], "alpha_shift": alpha[1]}


def reference(p, x):
    v = x.astype(np.int64) - p["in_zero_point"]
    positive = fp.multiply_by_quantized_multiplier(v, p["identity_multiplier"], p["identity_shift"])
    negative = fp.multiply_by_quantized_multiplier(v, p["alpha_multiplier"], p["alpha_shift"])
    return clamp(np.where(v >= 0, positive, negative) + p["out_zero_point"], (-128, 127))


def float_reference(graph, op, x):
    x = x.astype(np.float64)
    return np.where(x > 0, x, x * op.attrs["alpha"])


def torch(torch, call, x):
    return torch.where(x > 0, x, x * call.op.attrs["alpha"])


def check(graph, op, where: str) -> None:
    same_shape(graph, op, where)
    alpha = op.attrs.get("alpha")
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha)):
        raise UserError(f"{where}: alpha {alpha!r} must be a finite number")


DEFINITION = OpDef(
    "leaky_relu", lower, reference, float_reference, torch,
    TFLite(("LEAKY_RELU",), "LeakyReluOptions", (1, 1), {"alpha": Field("Alpha", "float")}, ("Alpha",)),
    CBinding((Kernel("leaky_relu", "leaky_relu", "const tdk_leaky_relu_params_t *p, const int8_t *in, int8_t *out",
                     declares=PARAMS),),
             struct_call("tdk_leaky_relu_params_t")),
    narrow_input=True, channels="carry", check=check)
