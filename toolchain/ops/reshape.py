"""RESHAPE (and SQUEEZE, EXPAND_DIMS): the same bytes under another shape."""
from __future__ import annotations

import math

import numpy as np

from .base import CBinding, Kernel, OpDef, TFLite
from .c import OpCall, io_refs
from .checks import shapes
from ..errors import UserError


def call(c, op, p, variant):
    (x,), y = io_refs(c, op)
    return OpCall(variant, None, {}, [x, y, str(p["bytes"])])


def alias_inplace(graph, op, dies):
    return ("alias", op.inputs[0]) if dies(op.inputs[0]) else None


def check(graph, op, where: str) -> None:
    (x,), out = shapes(graph, op)
    if math.prod(x) != math.prod(out):
        raise UserError(f"{where}: reshapes {list(x)} ({math.prod(x)} values) to {list(out)} ({math.prod(out)})")


DEFINITION = OpDef(
    "reshape", lambda graph, op: {"bytes": graph.tensors[op.inputs[0]].nbytes},
    lambda p, x: x, lambda graph, op, x: x,
    lambda torch, call, x: x.reshape((x.shape[0],) + tuple(call.out_shape[1:])),
    TFLite(("RESHAPE", "SQUEEZE", "EXPAND_DIMS"), "ReshapeOptions", (1, 1), order=("NewShape",),
           write_params=lambda op, out: [("shape", out.shape)],
           write_extra=lambda op, shape_of: {"NewShape": np.asarray(shape_of(op.outputs[0]), np.int32)}),
    CBinding((Kernel("reshape", "reshape", "const void *in, void *out, size_t bytes"),), call),
    grid="input", narrow_input=True, channels="flatten", inplace=alias_inplace, check=check)
