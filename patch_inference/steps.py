"""The schedule as steps: what the C program's model_invoke does, in order. targets/c_emitter.py
renders each kind of step; schedule transforms (input streaming, QuantMCU) rewrite them."""
from __future__ import annotations

from dataclasses import dataclass

from toolchain.ir import Graph
from toolchain.ops import lower
from toolchain.ops.choice import KernelChoice
from toolchain.ops.window import Region


@dataclass(frozen=True)
class Call:
    """Run op `op` (an index into the schedule's graph, or into `graph`: QuantMCU's low path runs
    the stage ops from a graph of its own) with `kernel`. inplace: the op overwrites its input
    (mode, as Schedule.inplace); views: per patch, where a stage op reads and writes (None: whole
    tensors); buffers: (tensor, buffer) pairs for tensors this call finds in a buffer other than
    their own (a tile); comment: what the C comment says instead of the op's name; note: added to it."""
    op: int
    kernel: KernelChoice
    inplace: str | None = None
    views: tuple[dict, ...] | None = None
    buffers: tuple[tuple[str, str], ...] = ()
    graph: Graph | None = None
    comment: str | None = None
    note: str = ""


@dataclass(frozen=True)
class InputReader:
    """Before each patch, the caller's reader writes `tensor`'s region of that patch into `tile`."""
    tensor: str
    tile: str
    regions: tuple[Region, ...]


@dataclass(frozen=True)
class RegionCheck:
    """A patch runs the loop's alt_body when every value of `tensor` in its region (views, one per
    patch) lies within `bounds`, after `requantize` (a Call, when given) has moved the region onto
    the alt body's grid."""
    tensor: str
    views: tuple[dict, ...]
    bounds: tuple[int, int]
    requantize: Call | None = None


@dataclass(frozen=True)
class PatchLoop:
    """A patch stage: `body` runs once per patch, `patches` times; buffers: (tensor, buffer) pairs
    every step inside finds in a tile; reader: the streamed input; guard: which patches run
    `alt_body` instead (QuantMCU)."""
    label: str
    patches: int
    body: tuple[Call, ...]
    buffers: tuple[tuple[str, str], ...] = ()
    reader: InputReader | None = None
    guard: RegionCheck | None = None
    alt_body: tuple[Call, ...] = ()


Step = Call | PatchLoop


def stage_views(graph: Graph, stage, k: int, streamed: bool = False) -> tuple[dict, ...]:
    """Views of stage op `first + k` for every patch: tiles in, tiles out, the first op reading
    the full stage input (or, streamed, a tile of just its region) and the last writing into the
    full stage output."""
    index = stage.first + k
    p = lower(graph, graph.ops[index])
    views = []
    for outs, ins in zip(stage.out_regions, stage.in_regions):
        region = outs[k]
        src = outs[k - 1] if k > 0 else (ins[0] if streamed else None)
        dst = None if index == stage.last else region
        views.append({
            "in_y0": src.y0 if src else 0, "in_x0": src.x0 if src else 0,
            "in_w": (src.x1 - src.x0) if src else p["in_shape"][2],
            "out_y0": dst.y0 if dst else 0, "out_x0": dst.x0 if dst else 0,
            "out_w": (dst.x1 - dst.x0) if dst else p["out_shape"][2],
            "y0": region.y0, "y1": region.y1, "x0": region.x0, "x1": region.x1})
    return tuple(views)
