"""Remove channels: given the channels each space keeps, rewrite every weight, bias and shape."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from toolchain.ir import Graph
from toolchain.ops import op_def

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
        weights = op_def(op.kind).weights
        if weights is None:
            continue
        out_pos, in_pos = positions[op.outputs[0]], positions[op.inputs[0]]
        w = _take(tensors[op.inputs[1]], out_pos, weights.out_axis)
        if weights.in_axis is not None:
            w = _take(w, in_pos, weights.in_axis)
        tensors[op.inputs[1]] = w
        if len(op.inputs) > 2:
            tensors[op.inputs[2]] = _take(tensors[op.inputs[2]], out_pos, 0)
    return replace(graph, tensors=tensors, ops=list(graph.ops))
