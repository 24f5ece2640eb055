"""Float reference executor: the IR's float32 semantics (TensorFlow Lite's float kernels) in numpy.

One function per op kind, `float_<kind>(graph, op, *inputs) -> output`. Sums are taken in float64
and rounded to float32 once per op, so this sits within float32 rounding of every framework it is
checked against (TensorFlow, onnxruntime, torch). Calibration runs the float model through it.
"""
from __future__ import annotations

import numpy as np

from .errors import UserError
from .ir import Graph, Op
from .lowering import spatial_geometry
from .reference import sliding_windows

ACTIVATIONS = {
    None: lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "relu_n1_to_1": lambda x: np.clip(x, -1.0, 1.0),
}


def _activate(op: Op, x: np.ndarray) -> np.ndarray:
    activation = op.attrs.get("activation")
    if activation not in ACTIVATIONS:
        raise UserError(f"op {op.name or op.kind}: unsupported fused activation {activation}")
    return ACTIVATIONS[activation](x)


def _bias(b, channels: int) -> np.ndarray:
    return np.zeros(channels) if b is None else b.astype(np.float64)


def float_conv2d(graph, op, x, w, b=None):
    p = spatial_geometry(graph, op, w.shape[1], w.shape[2])
    win = sliding_windows(x.astype(np.float64), p, 0.0)  # N,OH,OW,C,KH,KW
    acc = np.einsum("nhwcij,oijc->nhwo", win, w.astype(np.float64), optimize=True)
    return _activate(op, acc + _bias(b, w.shape[0]))


def float_depthwise_conv2d(graph, op, x, w, b=None):
    p = spatial_geometry(graph, op, w.shape[1], w.shape[2])
    win = sliding_windows(x.astype(np.float64), p, 0.0)
    win = np.repeat(win, w.shape[3] // x.shape[3], axis=3)  # depth multiplier
    acc = np.einsum("nhwoij,ijo->nhwo", win, w[0].astype(np.float64), optimize=True)
    return _activate(op, acc + _bias(b, w.shape[3]))


def float_fully_connected(graph, op, x, w, b=None):
    acc = x.reshape(-1, w.shape[1]).astype(np.float64) @ w.astype(np.float64).T
    return _activate(op, acc + _bias(b, w.shape[0]))


def float_add(graph, op, a, b):
    return _activate(op, a.astype(np.float64) + b.astype(np.float64))


def float_mul(graph, op, a, b):
    return _activate(op, a.astype(np.float64) * b.astype(np.float64))


def float_avg_pool2d(graph, op, x):
    """Padding is not counted: the sum over the valid part of each window over its size."""
    p = spatial_geometry(graph, op, *op.attrs["filter"])
    total = sliding_windows(x.astype(np.float64), p, 0.0).sum(axis=(-2, -1))
    count = sliding_windows(np.ones(x.shape[:3] + (1,)), p, 0.0).sum(axis=(-2, -1))
    return _activate(op, total / count)


def float_max_pool2d(graph, op, x):
    p = spatial_geometry(graph, op, *op.attrs["filter"])
    return _activate(op, sliding_windows(x.astype(np.float64), p, -np.inf).max(axis=(-2, -1)))


def float_mean(graph, op, x):
    axes = tuple(a % x.ndim for a in op.attrs["axes"])
    return x.astype(np.float64).mean(axis=axes, keepdims=op.attrs.get("keep_dims", False))


def float_pad(graph, op, x):
    return np.pad(x, op.attrs["paddings"], constant_values=op.attrs.get("pad_value", 0.0))


def float_reshape(graph, op, x):
    return x


def float_transpose(graph, op, x):
    return np.transpose(x, op.attrs["perm"])


def float_concat(graph, op, *xs):
    return _activate(op, np.concatenate(xs, axis=op.attrs["axis"]))


def float_softmax(graph, op, x):
    z = x.astype(np.float64) * op.attrs.get("beta", 1.0)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def float_relu(graph, op, x):
    return np.maximum(x, 0.0)


def float_relu6(graph, op, x):
    return np.clip(x, 0.0, 6.0)


FLOAT_OPS = {name[6:]: fn for name, fn in globals().items() if name.startswith("float_")}


def run_float(graph: Graph, feeds: list[np.ndarray], keep: bool = False, after=None) -> list[np.ndarray] | dict:
    """Run a float32 graph on one set of inputs (one array per graph input, in its shape).
    after(tensor name, value) -> value, when given, sees (and may replace) every op output.

    Returns the graph outputs, or with keep=True every tensor's value by name."""
    values: dict[str, np.ndarray] = {}
    for name, feed in zip(graph.inputs, feeds, strict=True):
        t = graph.tensors[name]
        values[name] = np.asarray(feed, dtype=np.float32).reshape(t.shape)
    for op in graph.ops:
        if op.kind not in FLOAT_OPS:
            raise UserError(f"op {op.name or op.kind}: no float reference for '{op.kind}'")
        t = graph.tensors[op.outputs[0]]
        if t.dtype != "float32":
            raise UserError(f"op {op.name or op.kind}: the float reference runs float32 graphs, "
                            f"'{t.name}' is {t.dtype}")
        args = [values[n] if n in values else graph.tensors[n].data for n in op.inputs]
        out = FLOAT_OPS[op.kind](graph, op, *args)
        values[op.outputs[0]] = np.asarray(out).astype(np.float32).reshape(t.shape)
        if after is not None:
            values[op.outputs[0]] = after(op.outputs[0], values[op.outputs[0]])
    if keep:
        return values
    return [values[n] for n in graph.outputs]
