"""Channel dependency groups on the IR (the DepGraph idea, on our graph).

Every tensor's channel axis (the last, NHWC) is described by segments: runs of channels that
belong to a *channel space*. A conv or fully connected layer creates a space (its output
channels); depthwise convs, element-wise ops, pools, pads and activations carry their input's
space through; an ADD couples the spaces of its operands into one; CONCATENATION lays spaces side
by side; a flatten before a fully connected layer repeats a space once per pixel. Removing channel
k of a space removes it everywhere at once: the producers' filters, the depthwise followers, and
the consumers' input weights. Spaces that reach a graph output, a softmax or an op we cannot
follow (transpose, other reshapes, depth multipliers) are frozen.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from toolchain.errors import UserError
from toolchain.ir import Graph
from toolchain.ops import op_def, weighted


@dataclass
class ChannelSpace:
    id: int
    size: int
    producers: list[int] = field(default_factory=list)   # op indices: output channels = this space
    followers: list[int] = field(default_factory=list)   # depthwise ops carrying it (multiplier 1)
    frozen: str | None = None                             # why it cannot be pruned


@dataclass
class Segments:
    """A tensor's channel axis: [(space id, channels)], repeated `repeat` times (a flatten of
    repeat pixels before a fully connected layer)."""
    parts: list[tuple[int, int]]
    repeat: int = 1

    @property
    def channels(self) -> int:
        return sum(n for _, n in self.parts)


class _UnionFind:
    def __init__(self):
        self.parent = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


@dataclass
class ChannelGroups:
    spaces: dict[int, ChannelSpace]
    segments: dict[str, Segments]      # tensor -> its channel segments (root space ids)

    def prunable(self) -> list[ChannelSpace]:
        return [s for s in self.spaces.values() if s.frozen is None and s.producers]


class _Spaces:
    """The channel spaces found so far, walking the graph in order, and each tensor's segments.
    One method per channel rule of the op definitions (toolchain/ops, OpDef.channels): it returns
    the op output's segments, or None when the output starts a space of its own, frozen."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.uf = _UnionFind()
        self.sizes: dict[int, int] = {}
        self.producers: dict[int, list[int]] = {}
        self.followers: dict[int, list[int]] = {}
        self.frozen: dict[int, str] = {}
        self.seg: dict[str, Segments] = {}

    def new_space(self, size: int, producer: int | None = None, frozen: str | None = None) -> Segments:
        sid = len(self.sizes)
        self.sizes[sid] = size
        self.producers[sid] = [producer] if producer is not None else []
        self.followers[sid] = []
        if frozen is not None:
            self.frozen[sid] = frozen
        return Segments([(sid, size)])

    def freeze(self, s: Segments | None, why: str) -> None:
        if s is not None:
            for sid, _ in s.parts:
                self.frozen.setdefault(sid, why)

    def create(self, index, op, ins, where):
        """conv, fully connected: its output channels are a space of its own."""
        channels = self.graph.tensors[op.outputs[0]].shape[-1]
        return self.new_space(channels, index)

    def follow(self, index, op, ins, where):
        """depthwise: one filter per channel, so with multiplier 1 it carries its input's space."""
        channels = self.graph.tensors[op.outputs[0]].shape[-1]
        if channels == self.graph.tensors[op.inputs[0]].shape[-1] and ins[0].repeat == 1:
            for sid, _ in ins[0].parts:
                self.followers[sid].append(index)
            return ins[0]
        self.freeze(ins[0], f"{where}: depth multiplier")
        return self.new_space(channels, frozen=f"{where}: depth multiplier")

    def couple(self, index, op, ins, where):
        """element-wise of same-shape operands: their spaces become one."""
        out = self.graph.tensors[op.outputs[0]]
        shapes = [self.graph.tensors[n].shape for n in op.inputs]
        if all(s == out.shape for s in shapes) and all(i is not None and i.repeat == 1 for i in ins):
            layouts = [[n for _, n in i.parts] for i in ins]
            if all(lay == layouts[0] for lay in layouts):
                for parts in zip(*(i.parts for i in ins)):
                    for sid, _ in parts[1:]:
                        self.uf.union(parts[0][0], sid)
                return ins[0]
        for i in ins:
            self.freeze(i, f"{where}: broadcast or mixed layout")
        return None

    def carry(self, index, op, ins, where):
        """pools, pad, activations: channel k in is channel k out."""
        return ins[0] if ins[0] is not None else self.freeze_all(index, op, ins, where)

    def reduce(self, index, op, ins, where):
        """mean: carries its input's space unless it reduces the channel axis."""
        if ins[0] is None:
            return self.freeze_all(index, op, ins, where)
        rank = len(self.graph.tensors[op.inputs[0]].shape)
        if (rank - 1) not in [a % rank for a in op.attrs["axes"]] and ins[0].repeat == 1:
            return ins[0]
        self.freeze(ins[0], f"{where}: reduces channels")
        return None

    def flatten(self, index, op, ins, where):
        """reshape to (batch, features) before a fully connected layer: the space once per pixel."""
        if ins[0] is None:
            return self.freeze_all(index, op, ins, where)
        src, out = self.graph.tensors[op.inputs[0]], self.graph.tensors[op.outputs[0]]
        if len(out.shape) == 2 and out.shape[0] == src.shape[0] and ins[0].repeat == 1:
            return Segments(ins[0].parts, out.shape[1] // src.shape[-1])
        self.freeze(ins[0], f"{where}: reshape")
        return None

    def stack(self, index, op, ins, where):
        """concatenation on the channel axis: the spaces side by side."""
        if not all(i is not None for i in ins):
            return self.freeze_all(index, op, ins, where)
        rank = len(self.graph.tensors[op.outputs[0]].shape)
        if op.attrs["axis"] % rank == rank - 1 and all(i.repeat == 1 for i in ins):
            return Segments([p for i in ins for p in i.parts])
        for i in ins:
            self.freeze(i, f"{where}: concat off the channel axis")
        return None

    def freeze_all(self, index, op, ins, where):
        """transpose, softmax, ...: the output depends on every input channel."""
        for i in ins:
            self.freeze(i, f"{where}: {op.kind} depends on every channel")
        return None

    def groups(self) -> ChannelGroups:
        """The spaces with coupled ones merged, and the segments in terms of the merged ids."""
        uf, spaces = self.uf, {}
        for sid in self.sizes:
            root = uf.find(sid)
            space = spaces.setdefault(root, ChannelSpace(root, self.sizes[root]))
            space.producers += self.producers[sid]
            space.followers += self.followers[sid]
            if sid in self.frozen and space.frozen is None:
                space.frozen = self.frozen[sid]
        segments = {n: Segments([(uf.find(s), k) for s, k in v.parts], v.repeat) for n, v in self.seg.items()}
        return ChannelGroups(spaces, segments)


RULES = {"create": _Spaces.create, "follow": _Spaces.follow, "couple": _Spaces.couple, "carry": _Spaces.carry,
         "reduce": _Spaces.reduce, "flatten": _Spaces.flatten, "stack": _Spaces.stack, "freeze": _Spaces.freeze_all}


def channel_groups(graph: Graph) -> ChannelGroups:
    spaces = _Spaces(graph)
    for name in graph.inputs:
        spaces.seg[name] = spaces.new_space(graph.tensors[name].shape[-1], frozen="graph input")
    for index, op in enumerate(graph.ops):
        ins = [spaces.seg.get(n) for n in op.inputs]
        where = f"op {index} ({op.kind})"
        out = RULES[op_def(op.kind).channels](spaces, index, op, ins, where)
        if out is None:
            out = spaces.new_space(graph.tensors[op.outputs[0]].shape[-1],
                                   frozen=f"{where}: output of an op channels cannot pass")
        spaces.seg[op.outputs[0]] = out
    for name in graph.outputs:
        spaces.freeze(spaces.seg.get(name), "graph output (classifier)")
    return spaces.groups()


def require_float(graph: Graph) -> None:
    for op in graph.ops:
        if weighted(op):
            if graph.tensors[op.inputs[1]].dtype != "float32":
                raise UserError("pruning works on a float model (prune, then quantize): "
                                f"op {op.name or op.kind} has {graph.tensors[op.inputs[1]].dtype} weights")


def kept_indices(segments: Segments, keep: dict[int, np.ndarray]) -> np.ndarray:
    """Positions along a tensor's channel axis that survive, given kept channels per space."""
    positions, offset = [], 0
    for sid, count in segments.parts:
        kept = keep.get(sid, np.arange(count))
        positions.append(offset + kept)
        offset += count
    per_pixel = np.concatenate(positions) if positions else np.arange(0)
    return np.concatenate([p * offset + per_pixel for p in range(segments.repeat)])
