"""The C calls the op bindings build (OpCall), and the parameter blocks several ops share.

A binding's `call(c, op, p, variant)` gets `c`, the emitter's side: `c.tensor_ref(name)` (where a
tensor lives: the arena, a tile, a constant), `c.const(name)`, `c.array(ctype, values)` (a const
array, shared with any other call that needs the same values), `c.bias_ref(op)` and
`c.scratch_ref()` (the op's scratch buffer in the arena)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPATIAL_ARGS = ("const tdk_spatial_params_t *p, const tdk_view_t *v, const int8_t *in, const int8_t *w, "
                "const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *out")
INPLACE_ARGS = ("const tdk_spatial_params_t *p, int8_t *buf, int8_t *temp, const int8_t *w, const int32_t *bias, "
                "const int32_t *mult, const int32_t *shift")
ELEMENTWISE_ARGS = "const tdk_elementwise_params_t *p, const int8_t *in, int8_t *out"


@dataclass
class OpCall:
    kind: str                     # the kernel called: tdk_<kind>
    struct: str | None = None
    params: dict = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    comment: str = ""
    number: int = -1
    template: str = ""            # kernels/<template>.c.j2
    spec: dict | None = None      # constants of a specialized entry point (kernel_spec)
    unpack: str = ""              # a statement run before the call (sub-8-bit weights)


def io_refs(c, op) -> tuple[list[str], str]:
    return [c.tensor_ref(n) for n in op.inputs[:1]], c.tensor_ref(op.outputs[0])


def spatial_params(p: dict, depth_multiplier: int = 1) -> dict:
    """tdk_spatial_params_t of a conv, depthwise conv or pool."""
    n, ih, iw, ic = p["in_shape"]
    _, oh, ow, oc = p["out_shape"]
    return {"batches": n, "in_h": ih, "in_w": iw, "in_c": ic, "out_h": oh, "out_w": ow,
            "out_c": oc, "k_h": p["filter"][0], "k_w": p["filter"][1],
            "stride_h": p["stride"][0], "stride_w": p["stride"][1],
            "dil_h": p["dilation"][0], "dil_w": p["dilation"][1],
            "pad_t": p["pad"][0], "pad_l": p["pad"][1], "depth_multiplier": depth_multiplier,
            "in_offset": p.get("in_offset", 0), "out_offset": p.get("out_zero_point", 0),
            "act_min": p["act"][0], "act_max": p["act"][1]}


def conv_call(c, op, p, variant: str, depth_multiplier: int) -> OpCall:
    """A conv or depthwise conv, out of place, or in place over its input (variant *_inplace:
    the input buffer becomes the output, with a temporary in the op's scratch)."""
    params = spatial_params(p, depth_multiplier)
    weights = [c.const(op.inputs[1]), c.bias_ref(op), c.array("int32_t", p["multiplier"]),
               c.array("int32_t", p["shift"])]
    if variant.endswith("_inplace"):
        return OpCall(variant, "tdk_spatial_params_t", params,
                      [c.tensor_ref(op.inputs[0]), c.scratch_ref()] + weights)
    (x,), y = io_refs(c, op)
    return OpCall(variant, "tdk_spatial_params_t", params, [x] + weights + [y])


def elementwise_params(count: int, zero_point: int = 0, in_zero_point: int = 0, multiplier: int = 0,
                       shift: int = 0, act: tuple[int, int] = (-128, 127), scale: float = 0.0) -> dict:
    """tdk_elementwise_params_t of a quantize, requantize, dequantize, relu or relu6 (zero_point: the
    one the kernel applies besides in_zero_point: the output's, or DEQUANTIZE's input's)."""
    return {"count": count, "in_zero_point": in_zero_point, "zero_point": zero_point, "multiplier": multiplier,
            "shift": shift, "act_min": act[0], "act_max": act[1], "scale": float(np.float32(scale)),
            "dscale": float(scale)}


def elementwise_call(params_of):
    """The call of an element-wise op whose parameter block params_of(lowered constants) gives."""
    def call(c, op, p, variant: str) -> OpCall:
        (x,), y = io_refs(c, op)
        return OpCall(variant, "tdk_elementwise_params_t", params_of(p), [x, y])
    return call


def struct_call(struct: str):
    """The call of an op whose lowered constants are its parameter block as they are."""
    def call(c, op, p, variant):
        (x,), y = io_refs(c, op)
        return OpCall(variant, struct, dict(p), [x, y])
    return call
