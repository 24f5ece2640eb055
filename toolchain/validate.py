"""The checks every importer's graph passes before any stage sees it: what the planner, the
lowering, the reference executors and the emitter take for granted, stated once on the IR.

load_model runs `check_graph` on whatever an importer built (TFLite, ONNX, PyTorch through
ONNX, Keras through TFLite), so a fact is checked in one place whatever the file format: shapes
and sizes within the read policy, constants that match their shapes and are finite,
quantization parameters in range, op arity, attributes in range, and every output shape equal
to what the op computes from its inputs (TFLite's rules). A failure names the op or tensor.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import UserError, quoted
from .ir import DTYPE_BYTES, Graph, Op, Tensor
from .read_policy import DEFAULT_POLICY, ReadPolicy

ACTIVATIONS = (None, "relu", "relu6", "relu_n1_to_1")
INTEGER_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767),
                 "int32": (-(1 << 31), (1 << 31) - 1), "int64": (-(1 << 63), (1 << 63) - 1)}
# Scales seen in real models lie within 1e-13..10; beyond these, value / scale overflows float32.
SCALE_RANGE = (2.0 ** -100, 2.0 ** 100)
# kind -> (fewest inputs, most inputs); every kind has one output
ARITY = {"conv2d": (2, 3), "depthwise_conv2d": (2, 3), "fully_connected": (2, 3), "add": (2, 2),
         "mul": (2, 2), "concat": (1, 1 << 16)}


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
        _check_arity(graph, op, where)
        CHECKS.get(op.kind, _same_shape)(graph, op, where)
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


def _check_arity(graph: Graph, op: Op, where: str) -> None:
    low, high = ARITY.get(op.kind, (1, 1))
    if not low <= len(op.inputs) <= high or len(op.outputs) != 1:
        raise UserError(f"{where}: takes {low}..{high} inputs and one output, has {len(op.inputs)} and "
                        f"{len(op.outputs)}")
    if all(graph.tensors[n].is_const for n in op.inputs):
        raise UserError(f"{where}: every input is a constant (nothing to compute at run time)")
    if graph.tensors[op.outputs[0]].is_const:
        raise UserError(f"{where}: its output {quoted(op.outputs[0])} is a constant")
    if op.attrs.get("activation", None) not in ACTIVATIONS:
        raise UserError(f"{where}: unsupported fused activation {op.attrs.get('activation')!r}")


def _shapes(graph: Graph, op: Op):
    return [graph.tensors[n].shape for n in op.inputs], graph.tensors[op.outputs[0]].shape


def _expect(where: str, got, want, what: str = "output shape") -> None:
    if tuple(got) != tuple(want):
        raise UserError(f"{where}: {what} {list(got)}, the op computes {list(want)}")


def _pair(op: Op, key: str, where: str, low: int = 1, default=None) -> tuple[int, int]:
    value = op.attrs.get(key, default)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, (int, np.integer)) and low <= v <= 1 << 16 for v in value)):
        raise UserError(f"{where}: {key} {value!r} must be two integers in {low}..65536")
    return int(value[0]), int(value[1])


def _window_out(where: str, op: Op, in_hw, kernel, stride, dilation) -> tuple[int, int]:
    padding = op.attrs.get("padding")
    if padding not in ("same", "valid"):
        raise UserError(f"{where}: padding {padding!r} is neither same nor valid")
    out = []
    for size, k, s, d in zip(in_hw, kernel, stride, dilation):
        effective = (k - 1) * d + 1
        if padding == "same":
            out.append(-(-size // s))
        elif size < effective:
            raise UserError(f"{where}: a {k}-wide window (dilation {d}) does not fit the input's {size}")
        else:
            out.append((size - effective) // s + 1)
    return tuple(out)


def _rank(where: str, shape, rank: int, what: str) -> None:
    if len(shape) != rank:
        raise UserError(f"{where}: {what} has shape {list(shape)}, expected rank {rank}")


def _const(graph: Graph, op: Op, position: int, where: str, what: str) -> Tensor:
    t = graph.tensors[op.inputs[position]]
    if not t.is_const:
        raise UserError(f"{where}: {what} {quoted(t.name)} must be a constant")
    return t


def _bias(graph: Graph, op: Op, channels: int, where: str) -> None:
    if len(op.inputs) > 2:
        bias = _const(graph, op, 2, where, "the bias")
        _expect(where, bias.shape, (channels,), "bias shape")


def _check_conv(graph: Graph, op: Op, where: str, depthwise: bool = False) -> None:
    (x, w, *_), out = _shapes(graph, op)
    _const(graph, op, 1, where, "the weights")
    _rank(where, x, 4, "the input")
    _rank(where, w, 4, "the weights")
    if graph.tensors[op.inputs[0]].is_const:
        raise UserError(f"{where}: the input must not be a constant")
    stride, dilation = _pair(op, "stride", where), _pair(op, "dilation", where, default=(1, 1))
    if depthwise:
        if w[0] != 1 or w[3] % x[3]:
            raise UserError(f"{where}: depthwise weights {list(w)} do not fit {x[3]} input channels "
                            f"(expected 1 x KH x KW x a multiple of {x[3]})")
    elif w[3] != x[3]:
        raise UserError(f"{where}: weights {list(w)} take {w[3]} input channels, the input has {x[3]}")
    channels = w[3] if depthwise else w[0]
    hw = _window_out(where, op, x[1:3], w[1:3], stride, dilation)
    _expect(where, out, (x[0],) + hw + (channels,))
    _bias(graph, op, channels, where)


def _check_depthwise(graph: Graph, op: Op, where: str) -> None:
    _check_conv(graph, op, where, depthwise=True)


def _check_fully_connected(graph: Graph, op: Op, where: str) -> None:
    (x, w, *_), out = _shapes(graph, op)
    _const(graph, op, 1, where, "the weights")
    _rank(where, w, 2, "the weights")
    units, depth = w
    size = math.prod(x)
    if size % depth:
        raise UserError(f"{where}: input {list(x)} ({size} values) is not a whole number of rows of {depth}")
    if math.prod(out) != size // depth * units or not out or out[-1] != units:
        raise UserError(f"{where}: output shape {list(out)}, the op computes {size // depth} rows of {units}")
    _bias(graph, op, units, where)


def _check_broadcast(graph: Graph, op: Op, where: str) -> None:
    (a, b), out = _shapes(graph, op)
    try:
        want = np.broadcast_shapes(tuple(a), tuple(b))
    except ValueError:
        raise UserError(f"{where}: input shapes {list(a)} and {list(b)} do not broadcast") from None
    _expect(where, out, want)


def _check_pool(graph: Graph, op: Op, where: str) -> None:
    (x,), out = _shapes(graph, op)
    _rank(where, x, 4, "the input")
    kernel, stride = _pair(op, "filter", where), _pair(op, "stride", where)
    _expect(where, out, (x[0],) + _window_out(where, op, x[1:3], kernel, stride, (1, 1)) + (x[3],))


def _axes(op: Op, key: str, rank: int, where: str) -> list[int]:
    axes = op.attrs.get(key)
    if not isinstance(axes, (tuple, list)) or not all(isinstance(a, (int, np.integer)) for a in axes):
        raise UserError(f"{where}: {key} {axes!r} must be a list of integers")
    if any(not -rank <= a < rank for a in axes):
        raise UserError(f"{where}: {key} {list(axes)} out of range for a rank-{rank} input")
    return [int(a) % rank for a in axes]


def _check_mean(graph: Graph, op: Op, where: str) -> None:
    (x,), out = _shapes(graph, op)
    axes = set(_axes(op, "axes", len(x), where))
    if op.attrs.get("keep_dims"):
        want = tuple(1 if i in axes else d for i, d in enumerate(x))
        _expect(where, out, want)
    elif math.prod(out) != math.prod(d for i, d in enumerate(x) if i not in axes):
        raise UserError(f"{where}: output shape {list(out)} does not hold the mean of {list(x)} over {sorted(axes)}")


def _check_pad(graph: Graph, op: Op, where: str) -> None:
    (x,), out = _shapes(graph, op)
    paddings = op.attrs.get("paddings")
    if (not isinstance(paddings, (tuple, list)) or len(paddings) != len(x)
            or not all(len(p) == 2 and all(isinstance(v, (int, np.integer)) and 0 <= v <= 1 << 16 for v in p)
                       for p in paddings)):
        raise UserError(f"{where}: paddings {paddings!r} must be {len(x)} pairs of non-negative integers")
    _expect(where, out, tuple(d + a + b for d, (a, b) in zip(x, paddings)))
    dtype = graph.tensors[op.inputs[0]].dtype
    if "pad_value" in op.attrs and dtype in INTEGER_RANGE:
        lo, hi = INTEGER_RANGE[dtype]
        if not lo <= op.attrs["pad_value"] <= hi:
            raise UserError(f"{where}: pad value {op.attrs['pad_value']} outside the {dtype} range")


def _check_reshape(graph: Graph, op: Op, where: str) -> None:
    (x,), out = _shapes(graph, op)
    if math.prod(x) != math.prod(out):
        raise UserError(f"{where}: reshapes {list(x)} ({math.prod(x)} values) to {list(out)} ({math.prod(out)})")


def _check_transpose(graph: Graph, op: Op, where: str) -> None:
    (x,), out = _shapes(graph, op)
    perm = op.attrs.get("perm")
    if not isinstance(perm, (tuple, list)) or sorted(int(p) for p in perm) != list(range(len(x))):
        raise UserError(f"{where}: perm {perm!r} is not a permutation of the input's {len(x)} axes")
    _expect(where, out, tuple(x[p] for p in perm))


def _check_concat(graph: Graph, op: Op, where: str) -> None:
    ins, out = _shapes(graph, op)
    rank = len(out)
    axis = op.attrs.get("axis")
    if not isinstance(axis, (int, np.integer)) or not -rank <= axis < rank:
        raise UserError(f"{where}: axis {axis!r} out of range for rank {rank}")
    axis = int(axis) % rank
    for shape in ins:
        if len(shape) != rank or any(d != o for i, (d, o) in enumerate(zip(shape, out)) if i != axis):
            raise UserError(f"{where}: input shape {list(shape)} does not line up with output {list(out)} "
                            f"outside axis {axis}")
    _expect(where, out, tuple(sum(s[axis] for s in ins) if i == axis else d for i, d in enumerate(out)))


def _check_softmax(graph: Graph, op: Op, where: str) -> None:
    _same_shape(graph, op, where)
    beta = op.attrs.get("beta", 1.0)
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
        raise UserError(f"{where}: beta {beta!r} must be finite and positive")


def _same_shape(graph: Graph, op: Op, where: str) -> None:
    (x,), out = _shapes(graph, op)
    _expect(where, out, x)


CHECKS = {
    "conv2d": _check_conv, "depthwise_conv2d": _check_depthwise, "fully_connected": _check_fully_connected,
    "add": _check_broadcast, "mul": _check_broadcast, "avg_pool2d": _check_pool, "max_pool2d": _check_pool,
    "mean": _check_mean, "pad": _check_pad, "reshape": _check_reshape, "transpose": _check_transpose,
    "concat": _check_concat, "softmax": _check_softmax,
}


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
        elif t.quant is None and not (t.is_const and position == 2 and t.dtype == "int32"
                                      and op.kind in ("conv2d", "depthwise_conv2d", "fully_connected")):
            # a bias may do without: it is added as it is; weights and activations are requantized
            raise UserError(f"{where}: tensor {quoted(name)} is {t.dtype} without quantization parameters")
