"""QUANTIZE (float32 -> int8, and int8 -> int8 onto another grid) and DEQUANTIZE (int8 ->
float32): the float boundary of a model, and requantization between grids (TFLM's quantize.cc,
dequantize.cc). QuantMCU's region kernels (quantize/quantmcu.py) are requantizations too."""
from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from ..errors import UserError
from ..fixedpoint import quantize_multiplier
from ..lowering import activation_range, f32
from .base import CBinding, Kernel, OpDef, TFLite
from .c import ELEMENTWISE_ARGS, elementwise_call, elementwise_params


def lower_quantize(graph, op) -> dict:
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if out.dtype != "int8":
        raise UserError(f"op {op.name}: QUANTIZE to {out.dtype} is not supported (int8 only)")
    if inp.dtype == "float32":
        return {"count": out.size, "scale": float(f32(out.scale())), "out_zero_point": out.zero_point()}
    if inp.dtype == "int8":
        m, s = quantize_multiplier(float(f32(inp.scale())) / float(f32(out.scale())))
        return {"count": out.size, "in_zero_point": inp.zero_point(),
                "out_zero_point": out.zero_point(), "multiplier": m, "shift": s,
                "act": activation_range(None, out)}   # a narrower feature map clamps to its width
    raise UserError(f"op {op.name}: QUANTIZE from {inp.dtype} is not supported")


def lower_dequantize(graph, op) -> dict:
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if inp.dtype != "int8" or out.dtype != "float32":
        raise UserError(f"op {op.name}: DEQUANTIZE {inp.dtype}->{out.dtype} is not supported")
    return {"count": inp.size, "scale": float(f32(inp.scale())), "in_zero_point": inp.zero_point()}


def reference_quantize(p, x):
    if x.dtype == np.float32:
        # roundf(x / scale) in float32, half away from zero, plus the zero point, saturated. From
        # +-2^31 on, and for NaN, TFLM's conversion gives INT32_MIN (x86), to which it adds the
        # zero point, wrapping: the top of the range for a negative zero point, else the bottom.
        d = (x / np.float32(p["scale"])).astype(np.float64)
        wild = ~(np.abs(d) < 2.0 ** 31)
        q = np.clip(np.sign(d) * np.floor(np.abs(np.nan_to_num(d)) + 0.5), -(1 << 30), 1 << 30)
        q = np.where(wild, (1 << 30) if p["out_zero_point"] < 0 else -(1 << 30), q)
        return np.clip(q.astype(np.int64) + p["out_zero_point"], -128, 127).astype(np.int8)
    y = fp.multiply_by_quantized_multiplier(x.astype(np.int64) - p["in_zero_point"],
                                            p["multiplier"], p["shift"])
    return np.clip(y + p["out_zero_point"], *p["act"]).astype(np.int8)


def reference_dequantize(p, x):
    return (np.float64(p["scale"]) * (x.astype(np.float64) - p["in_zero_point"])).astype(np.float32)


def quantize_params(p: dict) -> dict:
    if "multiplier" not in p:   # float32 -> int8
        return elementwise_params(p["count"], p["out_zero_point"], scale=p["scale"])
    return elementwise_params(p["count"], p["out_zero_point"], p["in_zero_point"], p["multiplier"], p["shift"], p["act"])


def quantize_call(c, op, p, variant):
    call = elementwise_call(quantize_params)(c, op, p, variant)
    if variant == "requantize_region":   # per pixel of the region
        call.params["count"] = c.graph.tensors[op.inputs[0]].shape[-1]
    return call


def quantize_variant(graph, op, inplace):
    return "quantize" if graph.tensors[op.inputs[0]].dtype == "float32" else "requantize"


QUANTIZE = OpDef(
    "quantize", lower_quantize, reference_quantize, None, None, TFLite(("QUANTIZE",), "QuantizeOptions", (1, 1)),
    CBinding((Kernel("quantize", "quantize", "const tdk_elementwise_params_t *p, const float *in, int8_t *out"),
              Kernel("requantize", "quantize", ELEMENTWISE_ARGS),
              # QuantMCU: whether a patch's input region holds no outlier, and the region onto a
              # low-bit grid (p->count: channels per pixel)
              Kernel("region_within", "quantmcu",
                     "const tdk_view_t *v, int32_t channels, const int8_t *in, int32_t lo, int32_t hi", returns="int"),
              Kernel("requantize_region", "quantmcu",
                     "const tdk_elementwise_params_t *p, const tdk_view_t *v, const int8_t *in, int8_t *out",
                     view=True)),
             quantize_call, quantize_variant),
    channels="carry")

DEQUANTIZE = OpDef(
    "dequantize", lower_dequantize, reference_dequantize, None, None,
    TFLite(("DEQUANTIZE",), "DequantizeOptions", (2, 2)),
    CBinding((Kernel("dequantize", "dequantize", "const tdk_elementwise_params_t *p, const int8_t *in, float *out"),),
             # the element-wise block's zero_point is the one its kernel applies: DEQUANTIZE's input's
             elementwise_call(lambda p: elementwise_params(p["count"], p["in_zero_point"], scale=p["scale"]))),
    channels="carry")

DEFINITIONS = (QUANTIZE, DEQUANTIZE)
