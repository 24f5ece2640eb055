"""ONNX (opset 13 and later) -> float32 IR in NHWC with TFLite weight layouts.

ONNX activations are NCHW; the IR is NHWC. Every ONNX value is held as an IR tensor together with
its layout `perm` (ir = onnx.transpose(perm)), so layout changes cost nothing until an op needs a
particular layout: convolutions and pools want NHWC (0, 2, 3, 1), Flatten/Reshape want ONNX's own
order, element-wise ops take what they get, and ONNX Transpose only relabels. Where a layout
change is needed it is a reshape when only 1-sized axes move, else a transpose. The graph's
inputs and outputs keep the model's own layout (what `--calib` data and the C API use).

Shape arithmetic on constants (Shape -> Gather -> Concat -> Reshape, as exporters write it) is
folded in numpy. Unsupported ops are all collected and refused in one line.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import onnx

from ..errors import UserError, quoted
from ..ir import Graph, Op, Tensor
from ..lowering import conv_padding
from ..read_policy import DEFAULT_POLICY, ReadPolicy
from .fusion import simplify
from .onnx_check import check_onnx

MIN_OPSET = 13
NHWC = (0, 2, 3, 1)


def _identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def _compose(have: tuple, want: tuple) -> tuple[int, ...]:
    """The transpose taking a tensor held in layout `have` to layout `want`."""
    return tuple(have.index(axis) for axis in want)


def _moves_only_ones(shape: tuple, perm: tuple) -> bool:
    return [perm[i] for i in range(len(perm)) if shape[perm[i]] != 1] == \
        [i for i in range(len(shape)) if shape[i] != 1]


class Builder:
    """The IR being built, and where each ONNX value lives in it."""

    def __init__(self, source: str, uses: Counter, policy: ReadPolicy = DEFAULT_POLICY):
        self.source, self.uses, self.policy = source, uses, policy
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.values: dict[str, tuple[str, tuple]] = {}   # ONNX name -> (IR name, perm)
        self.consts: dict[str, np.ndarray] = {}          # ONNX name -> array (ONNX layout)
        self.layouts: dict[tuple[str, tuple], str] = {}  # (IR name, perm) -> IR name

    def fail(self, node, message: str):
        raise UserError(f"{self.source}: {node.op_type} node {quoted(node.name or node.output[0])}: {message}")

    def check_size(self, shape, what: str, itemsize: int = 4) -> None:
        """Before anything of this shape is allocated: positive dimensions, within the policy."""
        if any(int(d) <= 0 for d in shape):
            raise UserError(f"{self.source}: {what} would have shape {list(shape)} (dimensions must be positive)")
        self.policy.check_tensor_bytes(math.prod(int(d) for d in shape) * itemsize,
                                       f"{self.source}: {what} of shape {list(shape)}")

    def new_tensor(self, name: str, shape, data: np.ndarray | None = None) -> str:
        self.check_size(shape, f"tensor {quoted(name)}")
        base, n = name, 1
        while name in self.tensors:
            name, n = f"{base}#{n}", n + 1
        self.tensors[name] = Tensor(name, tuple(int(d) for d in shape), "float32",
                                    None if data is None else np.ascontiguousarray(data, np.float32))
        return name

    def const(self, name: str, data: np.ndarray) -> str:
        return self.new_tensor(name, data.shape, data.astype(np.float32))

    def op(self, kind: str, inputs: list[str], name: str, shape, node=None, **attrs) -> str:
        out = self.new_tensor(name, shape)
        self.ops.append(Op(kind, list(inputs), [out], attrs, name=node.name if node is not None else name))
        return out

    def is_const(self, name: str) -> bool:
        return name in self.consts

    def array(self, node, position: int, what: str) -> np.ndarray:
        name = node.input[position] if len(node.input) > position else ""
        if name not in self.consts:
            self.fail(node, f"{what} must be a constant")
        return self.consts[name]

    def optional(self, node, position: int):
        name = node.input[position] if len(node.input) > position else ""
        return self.consts.get(name) if name else None

    def perm(self, name: str) -> tuple:
        return self.values[name][1]

    def onnx_shape(self, name: str) -> tuple[int, ...]:
        if name in self.consts:
            return tuple(self.consts[name].shape)
        ir, perm = self.values[name]
        shape = [0] * len(perm)
        for j, axis in enumerate(perm):
            shape[axis] = self.tensors[ir].shape[j]
        return tuple(shape)

    def get(self, name: str, perm: tuple | None = None) -> str:
        """The IR tensor holding ONNX value `name` in layout `perm` (default: as it is)."""
        if name in self.consts:
            data = self.consts[name]
            return self.const(name, data if perm is None else data.transpose(perm))
        ir, have = self.values[name]
        if perm is None or tuple(perm) == have:
            return ir
        key = (ir, tuple(perm))
        if key not in self.layouts:
            step = _compose(have, tuple(perm))
            src = self.tensors[ir].shape
            shape = tuple(src[i] for i in step)
            suffix = "nhwc" if tuple(perm) == NHWC else "x".join(map(str, perm))
            if _moves_only_ones(src, step):
                self.layouts[key] = self.op("reshape", [ir], f"{name}/{suffix}", shape)
            else:
                self.layouts[key] = self.op("transpose", [ir], f"{name}/{suffix}", shape, perm=step)
        return self.layouts[key]

    def set(self, name: str, ir: str, perm: tuple) -> None:
        self.values[name] = (ir, tuple(perm))


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------- spatial ops (NHWC)

def _window_padding(node, in_hw, kernel, strides, dilations, ceil_mode=False):
    """('same' | 'valid', explicit (top, bottom), (left, right) or None, output size)."""
    a = _attrs(node)
    auto_pad = _text(a.get("auto_pad", "NOTSET"))
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    same_out = [math.ceil(i / s) for i, s in zip(in_hw, strides)]
    if auto_pad == "VALID":
        return "valid", None, [(i - e) // s + 1 for i, e, s in zip(in_hw, eff, strides)]
    if auto_pad == "SAME_UPPER":
        return "same", None, same_out
    if auto_pad == "SAME_LOWER":
        totals = [max((o - 1) * s + e - i, 0) for o, s, e, i in zip(same_out, strides, eff, in_hw)]
        begin, end = [t - t // 2 for t in totals], [t // 2 for t in totals]
    else:
        pads = list(a.get("pads", [0] * 4))
        begin, end = pads[:2], pads[2:]
    rounding = math.ceil if ceil_mode else math.floor
    out = [rounding((i + p0 + p1 - e) / s) + 1 for i, p0, p1, e, s in zip(in_hw, begin, end, eff, strides)]
    if ceil_mode:  # the last window must start inside the input or its leading padding
        out = [o - 1 if (o - 1) * s >= i + p0 else o for o, s, i, p0 in zip(out, strides, in_hw, begin)]
    if not any(begin) and not any(end):
        return "valid", None, out
    same_begin = [conv_padding(i, k, s, d, o) for i, k, s, d, o in zip(in_hw, kernel, strides, dilations, same_out)]
    if out == same_out and begin == same_begin:
        return "same", None, out
    need = [max((o - 1) * s + e - i - p0, 0) for o, s, e, i, p0 in zip(out, strides, eff, in_hw, begin)]
    return "valid", ((begin[0], need[0]), (begin[1], need[1])), out


def _nhwc_input(b: Builder, node, explicit) -> str:
    x = b.get(node.input[0], NHWC)
    if explicit is None:
        return x
    n, h, w, c = b.tensors[x].shape
    (t, bo), (l, r) = explicit
    return b.op("pad", [x], f"{node.output[0]}/pad", (n, h + t + bo, w + l + r, c),
                paddings=((0, 0), (t, bo), (l, r), (0, 0)))


def _conv(b: Builder, node):
    a = _attrs(node)
    w = b.array(node, 1, "the weight")
    if w.ndim != 4:
        b.fail(node, f"{w.ndim - 2}-D convolution is not supported (2-D only)")
    n, c, h, wd = b.onnx_shape(node.input[0])
    group = int(a.get("group", 1))
    m, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    strides, dilations = list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))
    padding, explicit, (oh, ow) = _window_padding(node, (h, wd), (kh, kw), strides, dilations)
    bias = b.optional(node, 2)
    bias = np.zeros(m, np.float32) if bias is None else bias
    if group == 1:
        kind, weight = "conv2d", w.transpose(0, 2, 3, 1)          # OIHW -> OHWI
    elif group == c and w.shape[1] == 1:
        kind, weight = "depthwise_conv2d", w.transpose(1, 2, 3, 0)  # M1HW -> 1HWM
    else:
        b.fail(node, f"grouped convolution (group={group} of {c} channels) is not supported")
    x = _nhwc_input(b, node, explicit)
    out = b.op(kind, [x, b.const(f"{node.output[0]}/weights", weight), b.const(f"{node.output[0]}/bias", bias)],
               node.output[0], (n, oh, ow, m), node, stride=tuple(strides), padding=padding,
               dilation=tuple(dilations), activation=None)
    b.set(node.output[0], out, NHWC)


def _batch_norm(b: Builder, node):
    a = _attrs(node)
    gamma, beta, mean, var = (b.array(node, i, what) for i, what in
                              ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")))
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + float(a.get("epsilon", 1e-5)))
    shift = beta - mean * scale
    shape = b.onnx_shape(node.input[0])
    if len(shape) == 4:  # a per-channel affine, folded into the conv before it when there is one
        x = b.get(node.input[0], NHWC)
        n, c, h, w = shape
        out = b.op("depthwise_conv2d", [x, b.const(f"{node.output[0]}/scale", scale.reshape(1, 1, 1, c)),
                                        b.const(f"{node.output[0]}/shift", shift)],
                   node.output[0], (n, h, w, c), node, stride=(1, 1), padding="valid", dilation=(1, 1),
                   activation=None)
        b.set(node.output[0], out, NHWC)
    elif len(shape) == 2:
        x = b.get(node.input[0], (0, 1))
        scaled = b.op("mul", [x, b.const(f"{node.output[0]}/scale", scale)], f"{node.output[0]}/scaled", shape, node)
        b.set(node.output[0], b.op("add", [scaled, b.const(f"{node.output[0]}/shift", shift)],
                                   node.output[0], shape, node), (0, 1))
    else:
        b.fail(node, f"batch norm over a rank-{len(shape)} tensor is not supported")


def _pool(kind):
    def handler(b: Builder, node):
        a = _attrs(node)
        n, c, h, w = b.onnx_shape(node.input[0])
        kernel = list(a["kernel_shape"])
        strides, dilations = list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))
        if dilations != [1, 1]:
            b.fail(node, "dilated pooling is not supported")
        padding, explicit, (oh, ow) = _window_padding(node, (h, w), kernel, strides, dilations,
                                                      bool(a.get("ceil_mode", 0)))
        if explicit is not None or (kind == "avg_pool2d" and padding == "same" and a.get("count_include_pad", 0)):
            b.fail(node, f"padding {list(a.get('pads', []))} (ceil_mode={a.get('ceil_mode', 0)}, "
                         f"count_include_pad={a.get('count_include_pad', 0)}) has no TFLite equivalent")
        out = b.op(kind, [b.get(node.input[0], NHWC)], node.output[0], (n, oh, ow, c), node,
                   filter=tuple(kernel), stride=tuple(strides), padding=padding, activation=None)
        b.set(node.output[0], out, NHWC)
    return handler


def _global_average_pool(b: Builder, node):
    n, c, h, w = b.onnx_shape(node.input[0])
    out = b.op("mean", [b.get(node.input[0], NHWC)], node.output[0], (n, 1, 1, c), node, axes=(1, 2), keep_dims=True)
    b.set(node.output[0], out, NHWC)


def _global_max_pool(b: Builder, node):
    n, c, h, w = b.onnx_shape(node.input[0])
    out = b.op("max_pool2d", [b.get(node.input[0], NHWC)], node.output[0], (n, 1, 1, c), node,
               filter=(h, w), stride=(1, 1), padding="valid", activation=None)
    b.set(node.output[0], out, NHWC)


# ---------------------------------------------------------------- layout-agnostic ops

def _broadcast_const(data: np.ndarray, rank: int, perm: tuple) -> np.ndarray:
    data = data.reshape((1,) * (rank - data.ndim) + data.shape)
    return data.transpose(perm)


def _binary(kind):
    def handler(b: Builder, node):
        x, y = node.input[0], node.input[1]
        if b.is_const(x) and kind in ("add", "mul"):
            x, y = y, x
        if b.is_const(x):
            b.fail(node, "a constant minus or divided by a tensor is not supported")
        if b.is_const(y):
            c = b.consts[y].astype(np.float64)
            c = {"sub": -c, "div": 1.0 / c}.get(kind, c)
            perm = b.perm(x)
            if c.ndim > len(perm):
                b.fail(node, "the constant has more dimensions than the tensor")
            if kind in ("add", "sub") and _fold_into_bias(b, node, x, c):
                return
            other = b.const(f"{node.output[0]}/const", _broadcast_const(c, len(perm), perm))
            xs = b.get(x)
        elif kind in ("add", "mul"):
            perm = b.perm(x)
            if b.onnx_shape(x) == b.onnx_shape(y):
                xs, other = b.get(x, perm), b.get(y, perm)
            else:  # broadcasting: both in ONNX's own layout, where the shapes line up
                perm = _identity(len(perm))
                xs, other = b.get(x, perm), b.get(y, _identity(len(b.perm(y))))
        else:
            b.fail(node, f"{node.op_type} of two tensors is not supported")
        shape = np.broadcast_shapes(b.tensors[xs].shape, b.tensors[other].shape)
        b.set(node.output[0], b.op("mul" if kind in ("mul", "div") else "add", [xs, other],
                                   node.output[0], shape, node, activation=None), perm)
    return handler


def _fold_into_bias(b: Builder, node, x: str, c: np.ndarray) -> bool:
    """MatMul + Add(bias) as exporters write a Linear layer: the add becomes the FC's bias."""
    ir = b.values[x][0]
    producer = b.ops[-1] if b.ops and b.ops[-1].outputs == [ir] else None
    units = b.tensors[ir].shape[-1]
    if (producer is None or producer.kind != "fully_connected" or b.uses[x] != 1
            or c.size not in (1, units) or (c.ndim > 1 and c.shape[-1] != c.size)):
        return False
    bias = b.tensors[producer.inputs[2]]
    bias.data = (bias.data + np.broadcast_to(c.reshape(-1), (units,))).astype(np.float32)
    b.set(node.output[0], ir, b.perm(x))
    return True


def _relu(b: Builder, node):
    b.set(node.output[0], b.op("relu", [b.get(node.input[0])], node.output[0],
                               b.tensors[b.get(node.input[0])].shape, node), b.perm(node.input[0]))


def _leaky_relu(b: Builder, node):
    x = b.get(node.input[0])
    b.set(node.output[0], b.op("leaky_relu", [x], node.output[0], b.tensors[x].shape, node,
                               alpha=float(_attrs(node).get("alpha", 0.01))), b.perm(node.input[0]))


def _clip(b: Builder, node):
    a = _attrs(node)
    lo, hi = b.optional(node, 1), b.optional(node, 2)
    lo = float(lo) if lo is not None else a.get("min", -np.inf)
    hi = float(hi) if hi is not None else a.get("max", np.inf)
    kind = {(0.0, 6.0): "relu6", (0.0, np.inf): "relu"}.get((lo, hi))
    if kind is None:
        b.fail(node, f"Clip({lo}, {hi}) is not supported (only ReLU and ReLU6 ranges)")
    x = b.get(node.input[0])
    b.set(node.output[0], b.op(kind, [x], node.output[0], b.tensors[x].shape, node), b.perm(node.input[0]))


def _alias(b: Builder, node):
    b.values[node.output[0]] = b.values[node.input[0]]


def _transpose(b: Builder, node):
    ir, perm = b.values[node.input[0]]
    t = list(_attrs(node).get("perm", reversed(range(len(perm)))))
    b.set(node.output[0], ir, tuple(t.index(p) for p in perm))


def _reshape_to(b: Builder, node, shape):
    x = b.get(node.input[0], _identity(len(b.onnx_shape(node.input[0]))))
    b.set(node.output[0], b.op("reshape", [x], node.output[0], tuple(shape), node), _identity(len(shape)))


def _flatten(b: Builder, node):
    shape = b.onnx_shape(node.input[0])
    axis = _attrs(node).get("axis", 1) % max(len(shape), 1)
    _reshape_to(b, node, (math.prod(shape[:axis]), math.prod(shape[axis:])))


def _reshape(b: Builder, node):
    _reshape_to(b, node, _reshaped(b.onnx_shape(node.input[0]), b.array(node, 1, "the shape"),
                                   _attrs(node).get("allowzero", 0)))


def _squeeze_like(b: Builder, node):
    shape = b.onnx_shape(node.input[0])   # a zero-stride view: the shape arithmetic allocates nothing
    _reshape_to(b, node, FOLD[node.op_type](b, node, np.broadcast_to(np.float32(0), shape), *_rest(b, node)).shape)


def _gemm(b: Builder, node):
    a = _attrs(node)
    if a.get("transA", 0) or len(b.onnx_shape(node.input[0])) != 2:
        b.fail(node, "only Gemm of a 2-D input by a constant weight is supported")
    w = b.array(node, 1, "the weight B").astype(np.float64) * a.get("alpha", 1.0)
    w = w if a.get("transB", 0) else w.T
    c = b.optional(node, 2)
    bias = np.zeros(w.shape[0]) if c is None else np.broadcast_to(np.asarray(c).reshape(-1) * a.get("beta", 1.0),
                                                                   (w.shape[0],))
    _fully_connected(b, node, w, bias)


def _matmul(b: Builder, node):
    if len(b.onnx_shape(node.input[0])) != 2 or b.optional(node, 1) is None or b.consts[node.input[1]].ndim != 2:
        b.fail(node, "only MatMul of a 2-D input by a constant 2-D weight is supported")
    w = b.consts[node.input[1]].T
    _fully_connected(b, node, w, np.zeros(w.shape[0]))


def _fully_connected(b: Builder, node, w, bias):
    x = b.get(node.input[0], (0, 1))
    out = b.op("fully_connected", [x, b.const(f"{node.output[0]}/weights", w), b.const(f"{node.output[0]}/bias", bias)],
               node.output[0], (b.tensors[x].shape[0], w.shape[0]), node, activation=None)
    b.set(node.output[0], out, (0, 1))


def _softmax(b: Builder, node):
    rank = len(b.onnx_shape(node.input[0]))
    axis = _attrs(node).get("axis", -1) % rank
    perm = b.perm(node.input[0])
    if perm.index(axis) != rank - 1:
        perm = _identity(rank)
        if axis != rank - 1:
            b.fail(node, f"softmax over axis {axis} of a rank-{rank} tensor (only the last axis)")
    x = b.get(node.input[0], perm)
    b.set(node.output[0], b.op("softmax", [x], node.output[0], b.tensors[x].shape, node, beta=1.0), perm)


def _concat(b: Builder, node):
    first = next((n for n in node.input if not b.is_const(n)), None)
    if first is None:
        b.fail(node, "concatenation of constants only")
    perm = b.perm(first)
    axis = perm.index(_attrs(node)["axis"] % len(perm))
    parts = [b.get(n, perm) for n in node.input]
    shape = list(b.tensors[parts[0]].shape)
    shape[axis] = sum(b.tensors[p].shape[axis] for p in parts)
    b.set(node.output[0], b.op("concat", parts, node.output[0], shape, node, axis=axis, activation=None), perm)


def _pad(b: Builder, node):
    a = _attrs(node)
    if _text(a.get("mode", "constant")) != "constant":
        b.fail(node, f"pad mode {quoted(_text(a['mode']))} is not supported (constant only)")
    value = b.optional(node, 2)
    if value is not None and float(np.asarray(value).reshape(-1)[0]) != 0.0:
        b.fail(node, "padding with a value other than 0 is not supported")
    shape = b.onnx_shape(node.input[0])
    rank = len(shape)
    pads = b.array(node, 1, "pads").astype(np.int64).reshape(-1)
    axes = b.optional(node, 3)
    axes = list(range(rank)) if axes is None else [int(x) % rank for x in axes]
    begin, end = [0] * rank, [0] * rank
    for k, axis in enumerate(axes):
        begin[axis], end[axis] = int(pads[k]), int(pads[k + len(axes)])
    if min(begin + end) < 0:
        b.fail(node, "negative padding (cropping) is not supported")
    perm = b.perm(node.input[0])
    x = b.get(node.input[0])
    paddings = tuple((begin[p], end[p]) for p in perm)
    out_shape = tuple(d + p0 + p1 for d, (p0, p1) in zip(b.tensors[x].shape, paddings))
    b.set(node.output[0], b.op("pad", [x], node.output[0], out_shape, node, paddings=paddings), perm)


def _reduce_mean(b: Builder, node):
    a = _attrs(node)
    rank = len(b.onnx_shape(node.input[0]))
    axes = a.get("axes") if "axes" in a else b.optional(node, 1)
    axes = sorted({int(x) % rank for x in (range(rank) if axes is None or len(axes) == 0 else axes)})
    perm = b.perm(node.input[0])
    ir_axes = tuple(j for j, p in enumerate(perm) if p in axes)
    x = b.get(node.input[0])
    keep = bool(a.get("keepdims", 1))
    shape = [1 if j in ir_axes else d for j, d in enumerate(b.tensors[x].shape) if keep or j not in ir_axes]
    if keep:
        out_perm = perm
    else:
        left = [p for p in perm if p not in axes]
        out_perm = tuple(sorted(left).index(p) for p in left)
    b.set(node.output[0], b.op("mean", [x], node.output[0], shape, node, axes=ir_axes, keep_dims=keep), out_perm)


HANDLERS = {
    "Conv": _conv, "BatchNormalization": _batch_norm,
    "MaxPool": _pool("max_pool2d"), "AveragePool": _pool("avg_pool2d"),
    "GlobalAveragePool": _global_average_pool, "GlobalMaxPool": _global_max_pool,
    "Add": _binary("add"), "Sum": _binary("add"), "Mul": _binary("mul"),
    "Sub": _binary("sub"), "Div": _binary("div"),
    "Relu": _relu, "LeakyRelu": _leaky_relu, "Clip": _clip, "Identity": _alias, "Dropout": _alias, "Transpose": _transpose,
    "Flatten": _flatten, "Reshape": _reshape, "Squeeze": _squeeze_like, "Unsqueeze": _squeeze_like,
    "Gemm": _gemm, "MatMul": _matmul, "Softmax": _softmax, "Concat": _concat, "Pad": _pad,
    "ReduceMean": _reduce_mean,
}


# ---------------------------------------------------------------- constant folding (shape arithmetic)

def _rest(b: Builder, node) -> list:
    return [b.consts.get(n) if n else None for n in node.input[1:]]


def _axes(b: Builder, node, given) -> list[int] | None:
    a = _attrs(node)
    axes = a.get("axes") if "axes" in a else given
    return None if axes is None else [int(x) for x in np.asarray(axes).reshape(-1)]


def _reshaped(shape, target, allowzero=0) -> tuple[int, ...]:
    target = [int(d) for d in np.asarray(target).reshape(-1)]
    if not allowzero:
        target = [shape[i] if d == 0 else d for i, d in enumerate(target)]
    if -1 in target:
        known = math.prod(d for d in target if d != -1)
        target[target.index(-1)] = math.prod(shape) // known
    return tuple(target)


def _unsqueeze(b, node, x, axes=None):
    axes = _axes(b, node, axes)
    rank = x.ndim + len(axes)
    for axis in sorted(a % rank for a in axes):
        x = np.expand_dims(x, axis)
    return x


def _squeeze(b, node, x, axes=None):
    axes = _axes(b, node, axes)
    return np.squeeze(x, axis=None if axes is None else tuple(a % x.ndim for a in axes))


def _slice(b, node, x, starts, ends, axes=None, steps=None):
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[int(a) % x.ndim] = slice(int(s), int(e), int(st))
    return x[tuple(index)]


FOLD = {
    "Gather": lambda b, n, x, i: np.take(x, i, axis=_attrs(n).get("axis", 0)),
    "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Slice": _slice,
    "Concat": lambda b, n, *xs: np.concatenate(xs, axis=_attrs(n)["axis"]),
    "Cast": lambda b, n, x: x.astype(onnx.helper.tensor_dtype_to_np_dtype(_attrs(n)["to"])),
    "Reshape": lambda b, n, x, s: x.reshape(_reshaped(x.shape, s, _attrs(n).get("allowzero", 0))),
    "Flatten": lambda b, n, x: x.reshape(math.prod(x.shape[:_attrs(n).get("axis", 1)]), -1),
    "Transpose": lambda b, n, x: x.transpose(_attrs(n).get("perm")),
    "Identity": lambda b, n, x: x,
    "Add": lambda b, n, x, y: x + y, "Sub": lambda b, n, x, y: x - y,
    "Mul": lambda b, n, x, y: x * y,
    "Div": lambda b, n, x, y: x // y if np.issubdtype(x.dtype, np.integer) else x / y,
    "Sqrt": lambda b, n, x: np.sqrt(x), "Neg": lambda b, n, x: -x,
    "ConstantOfShape": lambda b, n, s: _constant_of_shape(b, n, s),
    "Range": lambda b, n, s, e, d: _range(b, n, s, e, d),
}


def _constant_of_shape(b: Builder, node, shape) -> np.ndarray:
    shape = [int(d) for d in np.asarray(shape).reshape(-1)]
    b.check_size(shape, f"ConstantOfShape node {quoted(node.name or node.output[0])}")
    return np.full(shape, _const_value(_attrs(node).get("value")))


def _range(b: Builder, node, start, limit, delta) -> np.ndarray:
    start, limit, delta = (np.asarray(v).reshape(-1)[0] for v in (start, limit, delta))
    if delta == 0:
        b.fail(node, "Range with a step of 0")
    b.check_size((max(int(math.ceil((limit - start) / delta)), 1),), f"Range node {quoted(node.name or node.output[0])}")
    return np.arange(start, limit, delta)


def _const_value(tensor) -> np.ndarray:
    return np.zeros(1, np.float32) if tensor is None else onnx.numpy_helper.to_array(tensor)


def _constant(node) -> np.ndarray:
    a = _attrs(node)
    if "value" in a:
        return onnx.numpy_helper.to_array(a["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return np.asarray(a[key], dtype)
    raise UserError(f"Constant node {quoted(node.name)}: unsupported value attribute {sorted(a)}")


def _shape(b: Builder, node) -> np.ndarray:
    a = _attrs(node)
    shape = np.array(b.onnx_shape(node.input[0]), np.int64)
    return shape[a.get("start", 0):a.get("end", len(shape))]


# ---------------------------------------------------------------- the model

def _static_input_shape(vi, source: str) -> tuple[int, ...]:
    if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        raise UserError(f"{source}: input {quoted(vi.name)} has no static shape")
    shape = []
    for axis, d in enumerate(vi.type.tensor_type.shape.dim):
        if not d.HasField("dim_value") or d.dim_value <= 0:
            what = quoted(d.dim_param) if d.dim_param else "unknown"
            raise UserError(f"{source}: input {quoted(vi.name)} has a dynamic dimension {what} at axis {axis} "
                            f"(tinydeploy needs fixed shapes: export without dynamic axes)")
        shape.append(int(d.dim_value))
    return tuple(shape)


# What numpy raises when an op's constants or attributes do not fit together (a Gather index out
# of range, a Reshape to a size that does not divide): the node is named and the file refused.
INCONSISTENT = (ValueError, IndexError, KeyError, TypeError, ZeroDivisionError, OverflowError)


def import_onnx(data: bytes, source: str = "model", policy: ReadPolicy = DEFAULT_POLICY) -> Graph:
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:
        raise UserError(f"{source}: not a readable ONNX model ({type(exc).__name__})") from None
    if not model.graph.node:
        raise UserError(f"{source}: not a readable ONNX model (no graph nodes)")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise UserError(f"{source}: ONNX opset {opset}; tinydeploy reads opset {MIN_OPSET} and later "
                        f"(re-export with opset_version={MIN_OPSET} or newer)")
    check_onnx(model, source, policy)
    graph = model.graph
    uses = Counter(name for node in graph.node for name in node.input)
    uses.update(o.name for o in graph.output)
    b = Builder(source, uses, policy)
    for init in graph.initializer:
        try:
            b.consts[init.name] = onnx.numpy_helper.to_array(init)
        except INCONSISTENT as exc:
            raise UserError(f"{source}: initializer {quoted(init.name)} does not hold its shape "
                            f"{list(init.dims)} ({type(exc).__name__})") from None
    inputs = []
    for vi in graph.input:
        if vi.name in b.consts:
            continue
        dtype = vi.type.tensor_type.elem_type
        if dtype != onnx.TensorProto.FLOAT:
            raise UserError(f"{source}: input {quoted(vi.name)} is {onnx.TensorProto.DataType.Name(dtype)}; "
                            f"tinydeploy imports float32 inputs")
        shape = _static_input_shape(vi, source)
        b.set(vi.name, b.new_tensor(vi.name, shape), _identity(len(shape)))
        inputs.append(b.values[vi.name][0])

    unsupported: dict[str, list[str]] = {}
    for node in graph.node:
        names = [n for n in node.input if n]
        if any(n not in b.consts and n not in b.values for n in names):
            continue  # downstream of an unsupported op: already reported there
        try:
            if not _import_node(b, node):
                where = f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
                unsupported.setdefault(where, []).append(node.name or node.output[0])
        except INCONSISTENT as exc:
            b.fail(node, f"its inputs and attributes do not fit together ({type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0][:160] if str(exc).strip() else 'no details'})")
    if unsupported:
        listed = ", ".join(f"{op} ({len(where)} node{'s' if len(where) > 1 else ''}, first {quoted(where[0])})"
                           for op, where in unsupported.items())
        raise UserError(f"{source}: unsupported ONNX op{'s' if len(unsupported) > 1 else ''}: {listed}")
    outputs = []
    for vi in graph.output:
        if vi.name not in b.values:
            raise UserError(f"{source}: output {quoted(vi.name)} is a constant; nothing to compute")
        outputs.append(b.get(vi.name, _identity(len(b.perm(vi.name)))))
    used = set(inputs) | set(outputs) | {n for op in b.ops for n in op.inputs + op.outputs}
    return simplify(Graph(tensors={n: t for n, t in b.tensors.items() if n in used}, ops=b.ops,
                          inputs=inputs, outputs=outputs))


def _import_node(b: Builder, node) -> bool:
    """Fold the node into constants or build its IR ops; False if tinydeploy has no such op."""
    names = [n for n in node.input if n]
    if node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type == "Constant":
        b.consts[node.output[0]] = _constant(node)
    elif node.op_type == "Shape":
        b.consts[node.output[0]] = _shape(b, node)
    elif node.op_type in FOLD and all(n in b.consts for n in names):
        b.consts[node.output[0]] = np.asarray(FOLD[node.op_type](b, node, *[b.consts.get(n) if n else None
                                                                          for n in node.input]))
    elif node.op_type in HANDLERS:
        HANDLERS[node.op_type](b, node)
    else:
        return False
    return True
