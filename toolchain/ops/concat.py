"""CONCATENATION of tensors on one quantization grid (the int8 inputs share the output's)."""
from __future__ import annotations

import numpy as np

from .base import CBinding, Field, Kernel, OpDef, TFLite
from .c import OpCall
from .checks import expect, shapes
from ..errors import UserError
from .common import ACTIVATION, activate


def lower(graph, op) -> dict:
    out = graph.tensors[op.outputs[0]]
    axis = op.attrs["axis"] % len(out.shape)
    outer = int(np.prod(out.shape[:axis]))
    size = np.dtype(out.dtype).itemsize
    inner = [int(np.prod(graph.tensors[n].shape[axis:])) * size for n in op.inputs]
    return {"outer": outer, "chunk_bytes": tuple(inner)}


def reference(p, *xs):
    parts = [x.reshape(p["outer"], -1).view(np.uint8).reshape(p["outer"], -1) for x in xs]
    return np.concatenate(parts, axis=1).reshape(-1).view(xs[0].dtype)


def call(c, op, p, variant):
    chunks = c.array("int32_t", p["chunk_bytes"])
    params = {"outer": p["outer"], "n_inputs": len(op.inputs), "chunk_bytes": chunks}
    ins = "(const void *const[]){" + ", ".join(c.tensor_ref(n) for n in op.inputs) + "}"
    return OpCall(variant, "tdk_concat_params_t", params, [ins, c.tensor_ref(op.outputs[0])])


def check(graph, op, where: str) -> None:
    ins, out = shapes(graph, op)
    rank = len(out)
    axis = op.attrs.get("axis")
    if not isinstance(axis, (int, np.integer)) or not -rank <= axis < rank:
        raise UserError(f"{where}: axis {axis!r} out of range for rank {rank}")
    axis = int(axis) % rank
    for shape in ins:
        if len(shape) != rank or any(d != o for i, (d, o) in enumerate(zip(shape, out)) if i != axis):
            raise UserError(f"{where}: input shape {list(shape)} does not line up with output {list(out)} "
                            f"outside axis {axis}")
    expect(where, out, tuple(sum(s[axis] for s in ins) if i == axis else d for i, d in enumerate(out)))


DEFINITION = OpDef(
    "concat", lower, reference,
    lambda graph, op, *xs: activate(op, np.concatenate(xs, axis=op.attrs["axis"])),
    lambda torch, call, *xs: torch.cat(xs, dim=call.op.attrs["axis"]),
    TFLite(("CONCATENATION",), "ConcatenationOptions", (1, 2), {"axis": Field("Axis"), **ACTIVATION},
           ("Axis", "FusedActivationFunction"), data_inputs=None),
    CBinding((Kernel("concat", "concat", "const tdk_concat_params_t *p, const void *const *ins, void *out"),), call),
    grid="shared", channels="stack", arity=(1, 1 << 16), check=check)
