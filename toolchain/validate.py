"""The checks every importer's graph passes before any stage sees it: what the planner, the
lowering, the reference executors and the emitter take for granted, stated once on the IR.

load_model runs `check_graph` on whatever an importer built (TFLite, ONNX, PyTorch through
ONNX, Keras through TFLite), so a fact is checked in one place whatever the file format: shapes
and sizes within the read policy, constants that match their shapes and are finite,
quantization parameters in range, op arity, attributes in range, and every output shape equal
to what the op computes from its inputs (TFLite's rules: each op definition's `arity` and
`check`, toolchain/ops). A failure names the op or tensor.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import UserError, quoted
from .ir import DTYPE_BYTES, Graph, Op, Tensor
from .ops import op_def, weighted
from .ops.checks import INTEGER_RANGE
from .ops.common import FLOAT_ACTIVATIONS
from .read_policy import DEFAULT_POLICY, ReadPolicy

# Scales seen in real models lie within 1e-13..10; beyond these, value / scale overflows float32.
SCALE_RANGE = (2.0 ** -100, 2.0 ** 100)


def check_graph(graph: Graph, source: str, policy: ReadPolicy = DEFAULT_POLICY) -> Graph:
    """`graph` if it holds together, else a UserError naming the first thing that does not."""
    if not graph.inputs or not graph.outputs or not graph.ops:
        raise UserError(f"{source}: the model has {len(graph.inputs)} inputs, {len(graph.outputs)} outputs and "
                        f"{len(graph.ops)} ops (it needs at least one of each)")
    _check_boundary(graph, source)
    total = 0
    for t in graph.tensors.values():
        _check_tensor(t, source, policy)
        total += t.nbytes
    policy.check_tensor_bytes(total, f"{source}: the model's tensors")
    quantized = any(t.quant is not None for t in graph.tensors.values())
    for index, op in enumerate(graph.ops):
        where = f"{source}: op {index} ({op.name or op.kind})"
        definition = op_def(op.kind)
        _check_arity(graph, op, definition.arity, where)
        definition.check(graph, op, where)
        _check_dtypes(graph, op, quantized, where)
    return graph


def _check_boundary(graph: Graph, source: str) -> None:
    for what, names in (("input", graph.inputs), ("output", graph.outputs)):
        if len(set(names)) != len(names):
            raise UserError(f"{source}: a graph {what} is listed twice")
    produced = {n for op in graph.ops for n in op.outputs}
    for name in graph.inputs:
        if name in produced:
            raise UserError(f"{source}: graph input {quoted(name)} is also written by an op")
    for name in graph.outputs:
        if name not in produced:
            raise UserError(f"{source}: graph output {quoted(name)} is not computed by any op")


def _check_tensor(t: Tensor, source: str, policy: ReadPolicy) -> None:
    where = f"{source}: tensor {quoted(t.name)}"
    if t.dtype not in DTYPE_BYTES:
        raise UserError(f"{where}: unsupported dtype {t.dtype}")
    if not all(isinstance(d, (int, np.integer)) and d > 0 for d in t.shape):
        raise UserError(f"{where}: shape {list(t.shape)} has a dimension that is not a positive integer")
    policy.check_tensor_bytes(t.nbytes, f"{where} of shape {list(t.shape)}")
    if t.data is not None:
        if tuple(t.data.shape) != tuple(t.shape) or t.data.dtype != np.dtype(t.dtype):
            raise UserError(f"{where}: its data ({t.data.dtype}, {list(t.data.shape)}) does not match the "
                            f"declared {t.dtype} {list(t.shape)}")
        if t.data.dtype.kind == "f" and not np.isfinite(t.data).all():
            raise UserError(f"{where}: constant holds NaN or infinite values")
    if t.quant is not None:
        _check_quant(t, where)


def _check_quant(t: Tensor, where: str) -> None:
    q = t.quant
    scale, zero_point = np.asarray(q.scale).reshape(-1), np.asarray(q.zero_point).reshape(-1)
    if scale.size == 0 or zero_point.size not in (1, scale.size):
        raise UserError(f"{where}: {scale.size} quantization scales, {zero_point.size} zero points")
    if not (np.isfinite(scale).all() and (scale > 0).all()):
        raise UserError(f"{where}: quantization scale must be finite and positive (got {scale[:4].tolist()})")
    if scale.min() < SCALE_RANGE[0] or scale.max() > SCALE_RANGE[1]:
        raise UserError(f"{where}: quantization scale {float(scale.min()):g}..{float(scale.max()):g} outside "
                        f"{SCALE_RANGE[0]:g}..{SCALE_RANGE[1]:g} (a real value / scale would not fit a float)")
    if q.axis is not None and scale.size > 1:
        if not 0 <= q.axis < len(t.shape) or t.shape[q.axis] != scale.size:
            raise UserError(f"{where}: {scale.size} per-channel scales on axis {q.axis} of shape {list(t.shape)}")
    lo, hi = INTEGER_RANGE.get(t.dtype, INTEGER_RANGE["int64"])
    if zero_point.min() < lo or zero_point.max() > hi:
        raise UserError(f"{where}: zero point outside the {t.dtype} range")


def _check_arity(graph: Graph, op: Op, arity: tuple[int, int], where: str) -> None:
    low, high = arity
    if not low <= len(op.inputs) <= high or len(op.outputs) != 1:
        raise UserError(f"{where}: takes {low}..{high} inputs and one output, has {len(op.inputs)} and "
                        f"{len(op.outputs)}")
    if all(graph.tensors[n].is_const for n in op.inputs):
        raise UserError(f"{where}: every input is a constant (nothing to compute at run time)")
    if graph.tensors[op.outputs[0]].is_const:
        raise UserError(f"{where}: its output {quoted(op.outputs[0])} is a constant")
    if op.attrs.get("activation", None) not in FLOAT_ACTIVATIONS:
        raise UserError(f"{where}: unsupported fused activation {op.attrs.get('activation')!r}")


def _check_dtypes(graph: Graph, op: Op, quantized: bool, where: str) -> None:
    """A float graph is float32 throughout; in a quantized one float32 appears only where a
    QUANTIZE takes it in or a DEQUANTIZE gives it out, and every integer activation is quantized."""
    for position, name in enumerate(op.inputs + op.outputs):
        t = graph.tensors[name]
        is_output = position >= len(op.inputs)
        if not quantized:
            if t.dtype != "float32":
                raise UserError(f"{where}: tensor {quoted(name)} is {t.dtype} in a float model")
            continue
        if t.dtype == "float32":
            boundary = (op.kind == "quantize" and not is_output) or (op.kind == "dequantize" and is_output)
            if not boundary:
                raise UserError(f"{where}: tensor {quoted(name)} is float32 in a quantized model "
                                f"(only a QUANTIZE input or a DEQUANTIZE output may be)")
        elif t.quant is None and not (t.is_const and position == 2 and t.dtype == "int32" and weighted(op)):
            # a bias may do without: it is added as it is; weights and activations are requantized
            raise UserError(f"{where}: tensor {quoted(name)} is {t.dtype} without quantization parameters")
