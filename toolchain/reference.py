"""Integer reference executor: TensorFlow Lite Micro's int8 semantics in numpy.

Each op runs its definition's `reference(params, *inputs)` (toolchain/ops/<op>.py), with params
from its `lower`. Everything is exact integer arithmetic on int64 (float only where TFLM itself
uses float: the QUANTIZE/DEQUANTIZE boundary). This is the oracle for the generated C.
"""
from __future__ import annotations

import numpy as np

from .ir import Graph
from .ops import lower, op_def


def run_reference(graph: Graph, feeds: list[np.ndarray], keep: bool = False) -> list[np.ndarray] | dict:
    """Run the graph on one set of inputs (one array per graph input, in graph dtype and shape).

    Returns the graph outputs, or with keep=True every tensor's value by name.
    """
    values: dict[str, np.ndarray] = {}
    for name, feed in zip(graph.inputs, feeds, strict=True):
        t = graph.tensors[name]
        values[name] = np.asarray(feed, dtype=t.dtype).reshape(t.shape)
    run_ops(graph, values, range(len(graph.ops)))
    if keep:
        return values
    return [values[n] for n in graph.outputs]


def run_ops(graph: Graph, values: dict[str, np.ndarray], ops) -> dict[str, np.ndarray]:
    """Run the ops with indices `ops` (in order) on `values` (tensor name -> array), adding
    their outputs to it."""
    for index in ops:
        op = graph.ops[index]
        args = [values[n] if n in values else graph.tensors[n].data for n in op.inputs]
        definition = op_def(op.kind)
        out = definition.reference(lower(graph, op), *args)
        t = graph.tensors[op.outputs[0]]
        values[op.outputs[0]] = np.asarray(out).astype(t.dtype).reshape(t.shape)
    return values


def ops_beyond_tflm(graph: Graph, feeds: list[np.ndarray]) -> list[str]:
    """The ops (as 'KIND (op N)') whose input, on these feeds, is one TFLM's kernels assert on."""
    values = run_reference(graph, feeds, keep=True)
    found = []
    for i, op in enumerate(graph.ops):
        definition = op_def(op.kind)
        if definition.beyond_tflm is not None and definition.beyond_tflm(lower(graph, op),
                                                                         values[op.inputs[0]]):
            found.append(f"{op.kind.upper()} (op {i})")
    return found
