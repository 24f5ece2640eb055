"""Per-layer facts: MACs, parameters, live activation bytes."""
from __future__ import annotations

import numpy as np

from .ir import Graph, Op


def op_macs(graph: Graph, op: Op) -> int:
    out = graph.tensors[op.outputs[0]]
    if op.kind == "conv2d":
        w = graph.tensors[op.inputs[1]]
        return out.size * int(np.prod(w.shape[1:]))
    if op.kind == "depthwise_conv2d":
        w = graph.tensors[op.inputs[1]]
        return out.size * w.shape[1] * w.shape[2]
    if op.kind == "fully_connected":
        return out.size * graph.tensors[op.inputs[1]].shape[1]
    if op.kind in ("avg_pool2d", "max_pool2d"):
        return out.size * op.attrs["filter"][0] * op.attrs["filter"][1]
    if op.kind in ("add", "mul", "softmax"):
        return out.size
    if op.kind == "mean":
        return graph.tensors[op.inputs[0]].size
    return 0


def op_params(graph: Graph, op: Op) -> int:
    return sum(graph.tensors[n].size for n in op.inputs if graph.tensors[n].is_const)


def live_bytes_per_step(graph: Graph, buffers) -> list[int]:
    """Bytes of activations live at each schedule step (0 = inputs copied in)."""
    steps = len(graph.ops) + 2
    return [sum(b.size for b in buffers if b.first <= s <= b.last) for s in range(steps)]


def layer_table(graph: Graph, buffers) -> list[dict]:
    live = live_bytes_per_step(graph, buffers)
    rows = []
    for index, op in enumerate(graph.ops):
        rows.append({
            "index": index, "op": op.kind, "name": op.name,
            "inputs": [list(graph.tensors[n].shape) for n in op.inputs if not graph.tensors[n].is_const],
            "output": list(graph.tensors[op.outputs[0]].shape),
            "params": op_params(graph, op), "macs": op_macs(graph, op), "live_bytes": live[index + 1],
        })
    return rows
