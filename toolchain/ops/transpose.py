"""TRANSPOSE by a constant permutation of up to 4 axes."""
from __future__ import annotations

import numpy as np

from . import kernel_spec
from ..lowering import out_shape4
from .base import CBinding, Kernel, OpDef, TFLite
from .c import struct_call
from .checks import expect, shapes
from ..errors import UserError


def lower(graph, op) -> dict:
    inp = graph.tensors[op.inputs[0]]
    perm = op.attrs["perm"]
    lead = 4 - len(perm)
    perm4 = tuple(range(lead)) + tuple(p + lead for p in perm)
    in_shape = out_shape4(inp.shape)
    in_strides = np.cumprod((in_shape[1:] + (1,))[::-1])[::-1]
    return {"out_shape": tuple(in_shape[p] for p in perm4),
            "strides": tuple(int(in_strides[p]) for p in perm4),
            "elem_bytes": {1: 1, 2: 2, 4: 4}[np.dtype(inp.dtype).itemsize]}


def reference(p, x):
    flat = x.reshape(-1)
    idx = np.zeros(p["out_shape"], np.int64)
    for axis, stride in enumerate(p["strides"]):
        shape = [1, 1, 1, 1]
        shape[axis] = p["out_shape"][axis]
        idx = idx + np.arange(p["out_shape"][axis]).reshape(shape) * stride
    return flat[idx]


def check(graph, op, where: str) -> None:
    (x,), out = shapes(graph, op)
    perm = op.attrs.get("perm")
    if not isinstance(perm, (tuple, list)) or sorted(int(p) for p in perm) != list(range(len(x))):
        raise UserError(f"{where}: perm {perm!r} is not a permutation of the input's {len(x)} axes")
    expect(where, out, tuple(x[p] for p in perm))


DEFINITION = OpDef(
    "transpose", lower, reference, lambda graph, op, x: np.transpose(x, op.attrs["perm"]),
    lambda torch, call, x: x.permute(*call.op.attrs["perm"]),
    TFLite(("TRANSPOSE",), "TransposeOptions", (1, 2),
           read_params=lambda builtin, inputs, constant, where: {
               "perm": tuple(int(a) for a in constant(1, "perm").reshape(-1))},
           write_params=lambda op, out: [("perm", op.attrs["perm"])]),
    CBinding((Kernel("transpose", "transpose", "const tdk_transpose_params_t *p, const void *in, void *out"),),
             struct_call("tdk_transpose_params_t"), spec=kernel_spec.transpose_spec),
    grid="input", check=check)
