"""How much each channel of each prunable space matters.

Scores are normalised per space (divided by the space's mean score) so that one global ranking
can compare layers of different widths and weight scales.
"""
from __future__ import annotations

import numpy as np
import torch

from toolchain.ir import Graph

from .groups import ChannelGroups
from .torch_graph import GraphModule


def _normalise(scores: np.ndarray) -> np.ndarray:
    mean = scores.mean()
    return scores / mean if mean > 0 else np.ones_like(scores)


def magnitude(graph: Graph, groups: ChannelGroups, p: int = 1) -> dict[int, np.ndarray]:
    """L1 (p=1) or L2 (p=2) norm of each channel's filters, over producers and depthwise followers."""
    scores = {}
    for space in groups.prunable():
        total = np.zeros(space.size)
        for index in space.producers:
            w = graph.tensors[graph.ops[index].inputs[1]].data
            flat = np.abs(w.reshape(w.shape[0], -1).astype(np.float64)) ** p
            total += flat.mean(axis=1) ** (1.0 / p)
        for index in space.followers:
            w = graph.tensors[graph.ops[index].inputs[1]].data
            flat = np.abs(np.moveaxis(w, 3, 0).reshape(w.shape[3], -1).astype(np.float64)) ** p
            total += flat.mean(axis=1) ** (1.0 / p)
        scores[space.id] = _normalise(total)
    return scores


def activation(graph: Graph, groups: ChannelGroups, calib: np.ndarray, batch: int = 64) -> dict[int, np.ndarray]:
    """Mean |activation| of each channel at the producers' outputs over the calibration inputs
    (run in batches by the torch executor: the float reference runs one sample at a time)."""
    module = GraphModule(graph).eval()
    x = torch.tensor(calib, dtype=torch.float32).reshape((-1,) + graph.tensors[graph.inputs[0]].shape[1:])
    taps = [(s.id, graph.ops[index].outputs[0]) for s in groups.prunable() for index in s.producers]
    sums = {s.id: np.zeros(s.size) for s in groups.prunable()}
    with torch.no_grad():
        for start in range(0, len(x), batch):
            outs = module(x[start:start + batch], [name for _, name in taps])
            for (sid, _), out in zip(taps, outs):
                sums[sid] += out.abs().reshape(len(out), -1, out.shape[-1]).mean(dim=1).sum(dim=0).double().numpy()
    return {sid: _normalise(total) for sid, total in sums.items()}


def channel_importance(graph: Graph, groups: ChannelGroups, method: str, calib=None) -> dict[int, np.ndarray]:
    if method == "l1":
        return magnitude(graph, groups, 1)
    if method == "l2":
        return magnitude(graph, groups, 2)
    if method == "activation":
        return activation(graph, groups, calib)
    raise ValueError(f"unknown importance '{method}' (l1, l2, activation)")
