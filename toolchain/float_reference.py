"""Float reference executor: the IR's float32 semantics (TensorFlow Lite's float kernels) in numpy.

Each op runs its definition's `float_reference(graph, op, *inputs)` (toolchain/ops/<op>.py). Sums
are taken in float64 and rounded to float32 once per op, so this sits within float32 rounding of
every framework it is checked against (TensorFlow, onnxruntime, torch). Calibration runs the
float model through it.
"""
from __future__ import annotations

import numpy as np

from .errors import UserError
from .ir import Graph
from .ops import op_def


def run_float(graph: Graph, feeds: list[np.ndarray], keep: bool = False, after=None) -> list[np.ndarray] | dict:
    """Run a float32 graph on one set of inputs (one array per graph input, in its shape).
    after(tensor name, value) -> value, when given, sees (and may replace) every op output.

    Returns the graph outputs, or with keep=True every tensor's value by name."""
    values: dict[str, np.ndarray] = {}
    for name, feed in zip(graph.inputs, feeds, strict=True):
        t = graph.tensors[name]
        values[name] = np.asarray(feed, dtype=np.float32).reshape(t.shape)
    for op in graph.ops:
        run = op_def(op.kind).float_reference
        if run is None:
            raise UserError(f"op {op.name or op.kind}: no float reference for '{op.kind}'")
        t = graph.tensors[op.outputs[0]]
        if t.dtype != "float32":
            raise UserError(f"op {op.name or op.kind}: the float reference runs float32 graphs, "
                            f"'{t.name}' is {t.dtype}")
        args = [values[n] if n in values else graph.tensors[n].data for n in op.inputs]
        out = run(graph, op, *args)
        values[op.outputs[0]] = np.asarray(out).astype(np.float32).reshape(t.shape)
        if after is not None:
            values[op.outputs[0]] = after(op.outputs[0], values[op.outputs[0]])
    if keep:
        return values
    return [values[n] for n in graph.outputs]
