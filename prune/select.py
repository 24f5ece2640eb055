"""Which channels go: a global ranking of normalised importance, per-layer floors, channel
counts rounded to what the kernels like, and searches for a MAC ratio or a budget."""
from __future__ import annotations

import math

import numpy as np

from toolchain.ir import Graph
from toolchain.ops import macs

from .apply import prune_graph
from .groups import ChannelGroups


def graph_macs(graph: Graph) -> int:
    return sum(macs(graph, op) for op in graph.ops)


def keep_for_threshold(groups: ChannelGroups, scores: dict[int, np.ndarray], threshold: float,
                       round_to: int = 4, floor: float = 0.25) -> dict[int, np.ndarray]:
    """Per space: the channels scoring at least `threshold`, at least `floor` of the space and
    at least round_to, their count rounded up to a multiple of round_to (never above the
    original width)."""
    keep = {}
    for space in groups.prunable():
        score = scores[space.id]
        count = int((score >= threshold).sum())
        count = max(count, math.ceil(floor * space.size), min(round_to, space.size))
        count = min(space.size, math.ceil(count / round_to) * round_to)
        keep[space.id] = np.sort(np.argsort(-score, kind="stable")[:count])
    return keep


def prune_to_ratio(graph: Graph, groups: ChannelGroups, scores, ratio: float, round_to: int = 4,
                   floor: float = 0.25):
    """The gentlest global threshold that removes at least `ratio` of the MACs (or as much as
    the floors allow). Returns (pruned graph, keep)."""
    base = graph_macs(graph)
    if ratio <= 0:
        return graph, {}
    candidates = np.unique(np.concatenate([s for s in scores.values()] + [np.zeros(1)]))
    lo, hi = 0, len(candidates) - 1
    best = None
    while lo <= hi:  # removed MACs grow with the threshold: bisect for the smallest that suffices
        mid = (lo + hi) // 2
        keep = keep_for_threshold(groups, scores, candidates[mid] + 1e-12, round_to, floor)
        pruned = prune_graph(graph, groups, keep)
        if 1 - graph_macs(pruned) / base >= ratio:
            best, hi = (pruned, keep), mid - 1
        else:
            lo = mid + 1
    if best is None:  # the floors stop short of the ratio: prune as far as they allow
        keep = keep_for_threshold(groups, scores, np.inf, round_to, floor)
        best = (prune_graph(graph, groups, keep), keep)
    return best
