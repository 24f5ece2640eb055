"""ADD and MUL of two int8 tensors with broadcasting (TFLM's add.cc, mul.cc)."""
from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from . import kernel_spec
from ..errors import UserError
from ..fixedpoint import quantize_multiplier
from ..lowering import activation_range, broadcast_strides, f32, out_shape4, require_int8
from .base import CBinding, Kernel, OpDef, TFLite
from .c import OpCall
from .checks import expect, shapes
from .common import ACTIVATION, activate, clamp, torch_activate

BINARY_ARGS = "const tdk_binary_params_t *p, const int8_t *a, const int8_t *b, int8_t *out"


def _operands(graph, op):
    require_int8(graph, op)
    a, b, out = (graph.tensors[n] for n in (op.inputs[0], op.inputs[1], op.outputs[0]))
    shape = out_shape4(out.shape)
    return a, b, out, {"out_shape": shape, "a_strides": broadcast_strides(a.shape, out.shape),
                       "b_strides": broadcast_strides(b.shape, out.shape)}


def lower_add(graph, op) -> dict:
    a, b, out, p = _operands(graph, op)
    left_shift = 20
    twice_max = 2 * float(max(f32(a.scale()), f32(b.scale())))
    m1, s1 = quantize_multiplier(float(f32(a.scale())) / twice_max)
    m2, s2 = quantize_multiplier(float(f32(b.scale())) / twice_max)
    mo, so = quantize_multiplier(twice_max / ((1 << left_shift) * float(f32(out.scale()))))
    p.update(a_offset=-a.zero_point(), b_offset=-b.zero_point(), out_zero_point=out.zero_point(),
             left_shift=left_shift, a_multiplier=m1, a_shift=s1, b_multiplier=m2, b_shift=s2,
             multiplier=mo, shift=so, act=activation_range(op.attrs.get("activation"), out))
    return p


def lower_mul(graph, op) -> dict:
    a, b, out, p = _operands(graph, op)
    m, s = quantize_multiplier(float(f32(a.scale())) * float(f32(b.scale())) / float(f32(out.scale())))
    p.update(a_offset=-a.zero_point(), b_offset=-b.zero_point(), out_zero_point=out.zero_point(),
             multiplier=m, shift=s, act=activation_range(op.attrs.get("activation"), out))
    return p


def _broadcast(p, a, b):
    shape = p["out_shape"]
    a = np.broadcast_to(a.reshape((1,) * (4 - a.ndim) + a.shape), shape).astype(np.int64)
    b = np.broadcast_to(b.reshape((1,) * (4 - b.ndim) + b.shape), shape).astype(np.int64)
    return a, b


def reference_add(p, a, b):
    a, b = _broadcast(p, a, b)
    sa = fp.multiply_by_pot(fp.saturating_rounding_doubling_high_mul(
        (a + p["a_offset"]) * (1 << p["left_shift"]), p["a_multiplier"]), p["a_shift"])
    sb = fp.multiply_by_pot(fp.saturating_rounding_doubling_high_mul(
        (b + p["b_offset"]) * (1 << p["left_shift"]), p["b_multiplier"]), p["b_shift"])
    out = fp.multiply_by_pot(fp.saturating_rounding_doubling_high_mul(sa + sb, p["multiplier"]), p["shift"])
    return clamp(out + p["out_zero_point"], p["act"])


def reference_mul(p, a, b):
    a, b = _broadcast(p, a, b)
    prod = fp.wrap_int32((a + p["a_offset"]) * (b + p["b_offset"]))
    return clamp(fp.multiply_by_quantized_multiplier(prod, p["multiplier"], p["shift"])
                 + p["out_zero_point"], p["act"])


def macs(graph, op) -> int:
    return graph.tensors[op.outputs[0]].size


def call(c, op, p, variant):
    params = {"out_shape": p["out_shape"], "a_strides": p["a_strides"], "b_strides": p["b_strides"],
              "a_offset": p["a_offset"], "b_offset": p["b_offset"], "out_offset": p["out_zero_point"],
              "left_shift": p.get("left_shift", 0), "a_multiplier": p.get("a_multiplier", 0),
              "a_shift": p.get("a_shift", 0), "b_multiplier": p.get("b_multiplier", 0),
              "b_shift": p.get("b_shift", 0), "multiplier": p["multiplier"], "shift": p["shift"],
              "act_min": p["act"][0], "act_max": p["act"][1]}
    args = [c.tensor_ref(op.inputs[0]), c.tensor_ref(op.inputs[1]), c.tensor_ref(op.outputs[0])]
    return OpCall(variant, "tdk_binary_params_t", params, args)


def alias_inplace(graph, op, dies):
    """The output takes the buffer of a dying input of its own shape and type."""
    out = graph.tensors[op.outputs[0]]
    for name in op.inputs:
        t = graph.tensors[name]
        if dies(name) and t.shape == out.shape and t.dtype == out.dtype:
            return "alias", name
    return None


def check(graph, op, where: str) -> None:
    (a, b), out = shapes(graph, op)
    try:
        want = np.broadcast_shapes(tuple(a), tuple(b))
    except ValueError:
        raise UserError(f"{where}: input shapes {list(a)} and {list(b)} do not broadcast") from None
    expect(where, out, want)


ADD = OpDef(
    "add", lower_add, reference_add,
    lambda graph, op, a, b: activate(op, a.astype(np.float64) + b.astype(np.float64)),
    lambda torch, call, a, b: torch_activate(torch, call.op, a + b),
    TFLite(("ADD",), "AddOptions", (1, 2), ACTIVATION, ("FusedActivationFunction",), data_inputs=2),
    CBinding((Kernel("add", "add", BINARY_ARGS),), call, spec=kernel_spec.add_spec),
    macs=macs, narrow_input=True, fuses_activation=True, channels="couple", inplace=alias_inplace, arity=(2, 2),
    check=check)

MUL = OpDef(
    "mul", lower_mul, reference_mul,
    lambda graph, op, a, b: activate(op, a.astype(np.float64) * b.astype(np.float64)),
    lambda torch, call, a, b: torch_activate(torch, call.op, a * b),
    TFLite(("MUL",), "MulOptions", (1, 2), ACTIVATION, ("FusedActivationFunction",), data_inputs=2),
    CBinding((Kernel("mul", "mul", BINARY_ARGS),), call),
    macs=macs, narrow_input=True, fuses_activation=True, channels="couple", arity=(2, 2), check=check)

DEFINITIONS = (ADD, MUL)
