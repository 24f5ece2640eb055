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


PASS_THROUGH = ("avg_pool2d", "max_pool2d", "pad", "relu", "relu6", "quantize", "dequantize")


def channel_groups(graph: Graph) -> ChannelGroups:
    uf = _UnionFind()
    sizes: dict[int, int] = {}
    producers: dict[int, list[int]] = {}
    followers: dict[int, list[int]] = {}
    frozen: dict[int, str] = {}
    seg: dict[str, Segments] = {}

    def new_space(size, producer=None):
        sid = len(sizes)
        sizes[sid] = size
        producers[sid] = [producer] if producer is not None else []
        followers[sid] = []
        return sid

    def freeze(s: Segments | None, why: str):
        if s is not None:
            for sid, _ in s.parts:
                frozen.setdefault(sid, why)

    for name in graph.inputs:
        t = graph.tensors[name]
        sid = new_space(t.shape[-1])
        frozen[sid] = "graph input"
        seg[name] = Segments([(sid, t.shape[-1])])

    for index, op in enumerate(graph.ops):
        ins = [seg.get(n) for n in op.inputs]
        out = graph.tensors[op.outputs[0]]
        where = f"op {index} ({op.kind})"
        if op.kind in ("conv2d", "fully_connected"):
            seg[op.outputs[0]] = Segments([(new_space(out.shape[-1], index), out.shape[-1])])
            continue
        if op.kind == "depthwise_conv2d":
            if out.shape[-1] == graph.tensors[op.inputs[0]].shape[-1] and ins[0].repeat == 1:
                for sid, _ in ins[0].parts:
                    followers[sid].append(index)
                seg[op.outputs[0]] = ins[0]
            else:
                freeze(ins[0], f"{where}: depth multiplier")
                sid = new_space(out.shape[-1])
                frozen[sid] = f"{where}: depth multiplier"
                seg[op.outputs[0]] = Segments([(sid, out.shape[-1])])
            continue
        if op.kind in ("add", "mul"):
            shapes = [graph.tensors[n].shape for n in op.inputs]
            if all(s == out.shape for s in shapes) and all(i is not None and i.repeat == 1 for i in ins):
                layouts = [[n for _, n in i.parts] for i in ins]
                if all(lay == layouts[0] for lay in layouts):
                    for parts in zip(*(i.parts for i in ins)):
                        for sid, _ in parts[1:]:
                            uf.union(parts[0][0], sid)
                    seg[op.outputs[0]] = ins[0]
                    continue
            for i in ins:
                freeze(i, f"{where}: broadcast or mixed layout")
        elif op.kind in PASS_THROUGH and ins[0] is not None:
            seg[op.outputs[0]] = ins[0]
            continue
        elif op.kind == "mean" and ins[0] is not None:
            rank = len(graph.tensors[op.inputs[0]].shape)
            if (rank - 1) not in [a % rank for a in op.attrs["axes"]] and ins[0].repeat == 1:
                seg[op.outputs[0]] = ins[0]
                continue
            freeze(ins[0], f"{where}: reduces channels")
        elif op.kind == "reshape" and ins[0] is not None:
            src = graph.tensors[op.inputs[0]]
            channels = src.shape[-1]
            if len(out.shape) == 2 and out.shape[0] == src.shape[0] and ins[0].repeat == 1:
                seg[op.outputs[0]] = Segments(ins[0].parts, out.shape[1] // channels)
                continue
            freeze(ins[0], f"{where}: reshape")
        elif op.kind == "concat" and all(i is not None for i in ins):
            rank = len(out.shape)
            if op.attrs["axis"] % rank == rank - 1 and all(i.repeat == 1 for i in ins):
                seg[op.outputs[0]] = Segments([p for i in ins for p in i.parts])
                continue
            for i in ins:
                freeze(i, f"{where}: concat off the channel axis")
        else:
            for i in ins:
                freeze(i, f"{where}: {op.kind} depends on every channel")
        sid = new_space(out.shape[-1])
        frozen[sid] = f"{where}: output of an op channels cannot pass"
        seg[op.outputs[0]] = Segments([(sid, out.shape[-1])])

    for name in graph.outputs:
        freeze(seg.get(name), "graph output (classifier)")
    # merge coupled spaces
    spaces: dict[int, ChannelSpace] = {}
    for sid in sizes:
        root = uf.find(sid)
        space = spaces.setdefault(root, ChannelSpace(root, sizes[root]))
        space.producers += producers[sid]
        space.followers += followers[sid]
        if sid in frozen and space.frozen is None:
            space.frozen = frozen[sid]
    segments = {n: Segments([(uf.find(s), k) for s, k in v.parts], v.repeat) for n, v in seg.items()}
    return ChannelGroups(spaces, segments)


def require_float(graph: Graph) -> None:
    for op in graph.ops:
        if op.kind in ("conv2d", "depthwise_conv2d", "fully_connected"):
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
