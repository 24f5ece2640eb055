"""Remove channels: given the channels each space keeps, rewrite every weight, bias and shape."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from toolchain.ir import Graph

from .groups import ChannelGroups, kept_indices


def _take(t, indices, axis):
    return replace(t, data=np.take(t.data, indices, axis=axis), shape=tuple(
        len(indices) if a == axis else d for a, d in enumerate(t.shape)))


def prune_graph(graph: Graph, groups: ChannelGroups, keep: dict[int, np.ndarray]) -> Graph:
    """A new graph without the channels `keep` drops (space id -> sorted kept channel indices;
    spaces not named keep everything)."""
    tensors = dict(graph.tensors)
    positions = {name: kept_indices(seg, keep) for name, seg in groups.segments.items()}
    for name, pos in positions.items():
        tensors[name] = replace(tensors[name], shape=tensors[name].shape[:-1] + (len(pos),))
    for op in graph.ops:
        if op.kind not in ("conv2d", "depthwise_conv2d", "fully_connected"):
            continue
        out_pos, in_pos = positions[op.outputs[0]], positions[op.inputs[0]]
        w_name = op.inputs[1]
        if op.kind == "conv2d":
            w = _take(_take(tensors[w_name], out_pos, 0), in_pos, 3)
        elif op.kind == "depthwise_conv2d":
            w = _take(tensors[w_name], out_pos, 3)
        else:
            w = _take(_take(tensors[w_name], out_pos, 0), in_pos, 1)
        tensors[w_name] = w
        if len(op.inputs) > 2:
            tensors[op.inputs[2]] = _take(tensors[op.inputs[2]], out_pos, 0)
    return replace(graph, tensors=tensors, ops=list(graph.ops))
