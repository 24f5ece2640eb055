"""Per-layer facts: MACs, parameters, live activation bytes."""
from __future__ import annotations

from .ir import Graph, Op
from .ops import macs


def op_params(graph: Graph, op: Op) -> int:
    return sum(graph.tensors[n].size for n in op.inputs if graph.tensors[n].is_const)


def layer_table(graph: Graph, live: list[int]) -> list[dict]:
    """One row per op; live: bytes of activations live at each schedule step (0 = inputs copied
    in, op i runs at step i + 1)."""
    rows = []
    for index, op in enumerate(graph.ops):
        rows.append({
            "index": index, "op": op.kind, "name": op.name,
            "inputs": [list(graph.tensors[n].shape) for n in op.inputs if not graph.tensors[n].is_const],
            "output": list(graph.tensors[op.outputs[0]].shape),
            "params": op_params(graph, op), "macs": macs(graph, op), "live_bytes": live[index + 1],
        })
    return rows
