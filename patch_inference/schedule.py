"""Schedules: the order ops run in, which run in place, which run patch by patch, and the
buffers (with lifetimes) that the memory planner lays out.

Steps are numbered as in memory_planner.graph_buffers: 0 copies the inputs in, op i runs at
step i + 1, the last step copies the outputs out. A patch stage runs a chain of spatial ops
(conv, depthwise, pool) patch by patch: each stage op writes a small tile, the last writes its
patch of the full stage output; the rest of the network runs layer by layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from targets.kernel_spec import working_bytes
from toolchain.analysis import op_macs
from toolchain.ir import Graph, Op
from toolchain.lowering import lower
from toolchain.packing import unpacked_bytes

from .memory_planner import Buffer, MemoryPlan, check_no_overlap, lower_bound, plan_memory
from .receptive_field import SPATIAL_KINDS, Region, input_region


@dataclass
class PatchStage:
    first: int                     # first op index of the stage
    last: int                      # last op index (its output is assembled in full)
    grid: int                      # n x n patches of the stage output
    out_regions: list[list[Region]]  # [patch][k]: output region of stage op first + k
    in_regions: list[list[Region]]   # [patch][k]: input region it reads
    reaches_back: bool = True        # first is as early as the chain of spatial ops allows

    @property
    def ops(self) -> range:
        return range(self.first, self.last + 1)

    @property
    def label(self) -> str:
        """The --patch option that gives this stage: NxN@LAST, or NxN@FIRST-LAST for a stage
        that starts later than the chain allows."""
        span = f"{self.last}" if self.reaches_back else f"{self.first}-{self.last}"
        return f"{self.grid}x{self.grid}@{span}"


@dataclass
class Schedule:
    graph: Graph
    stage: PatchStage | None
    inplace: dict[int, str]          # op index -> "depthwise" | "pointwise" | "alias"
    scratch: dict[int, int]          # op index -> bytes of temporary buffer
    buffer_of: dict[str, str]        # tensor (or tile) name -> buffer name
    buffers: list[Buffer]
    plan: MemoryPlan
    macs: int
    executed_macs: int
    tiles: dict[int, str] = field(default_factory=dict)  # stage op index -> tile buffer name
    stream_input: bool = False
    sub_offset: dict[str, int] = field(default_factory=dict)  # tensor -> offset inside its buffer
    quantmcu: object = None   # the stage's QuantMCU low path (quantize.quantmcu.LowPath), if any

    def offset(self, name: str) -> int:
        return self.plan.offsets[self.buffer_of[name]] + self.sub_offset.get(name, 0)

    @property
    def mac_overhead(self) -> float:
        return self.executed_macs / self.macs - 1.0 if self.macs else 0.0


# ---- patch stages ----------------------------------------------------------------------------

def chain_ok(graph: Graph, first: int, last: int) -> bool:
    """ops[first..last] are spatial ops on batch 1, each feeding only the next."""
    for i in range(first, last + 1):
        op = graph.ops[i]
        if op.kind not in SPATIAL_KINDS or graph.tensors[op.inputs[0]].shape[0] != 1:
            return False
        if i > first:
            prev_out = graph.ops[i - 1].outputs[0]
            if op.inputs[0] != prev_out or prev_out in graph.outputs:
                return False
            if any(prev_out in graph.ops[j].inputs for j in range(len(graph.ops)) if j != i):
                return False
    return True


def split_even(size: int, n: int) -> list[tuple[int, int]]:
    bounds = [round(i * size / n) for i in range(n + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(n) if bounds[i + 1] > bounds[i]]


def make_stage(graph: Graph, first: int, last: int, grid: int) -> PatchStage:
    params = [lower(graph, graph.ops[i]) for i in range(first, last + 1)]
    _, oh, ow, _ = graph.tensors[graph.ops[last].outputs[0]].shape
    out_regions, in_regions = [], []
    for y0, y1 in split_even(oh, grid):
        for x0, x1 in split_even(ow, grid):
            region = Region(y0, y1, x0, x1)
            outs, ins = [], []
            for p in reversed(params):
                outs.append(region)
                region = input_region(p, region)
                ins.append(region)
            out_regions.append(outs[::-1])
            in_regions.append(ins[::-1])
    return PatchStage(first, last, grid, out_regions, in_regions, earliest_first(graph, last) == first)


def earliest_first(graph: Graph, last: int) -> int:
    """The first op of the longest stage chain that ends at op `last`."""
    first = last
    while first > 0 and chain_ok(graph, first - 1, last):
        first -= 1
    return first


def stage_executed_macs(graph: Graph, stage: PatchStage) -> int:
    total = 0
    for k, i in enumerate(stage.ops):
        out = graph.tensors[graph.ops[i].outputs[0]]
        per_pixel = op_macs(graph, graph.ops[i]) // (out.shape[1] * out.shape[2])
        total += per_pixel * sum(regions[k].area for regions in stage.out_regions)
    return total


# ---- in-place execution ----------------------------------------------------------------------

def last_uses(graph: Graph) -> dict[str, int]:
    last = {}
    for i, op in enumerate(graph.ops):
        for name in op.inputs:
            last[name] = i
    for name in graph.outputs:
        last[name] = len(graph.ops)
    return last


def inplace_kind(graph: Graph, index: int, last: dict[str, int]) -> tuple[str, str] | None:
    """(how, which input) when op `index` can overwrite a dying input, else None."""
    op = graph.ops[index]
    out = graph.tensors[op.outputs[0]]

    def dies(name):
        t = graph.tensors[name]
        return not t.is_const and last.get(name) == index and name not in graph.outputs

    if op.kind == "depthwise_conv2d" and dies(op.inputs[0]):
        p = lower(graph, op)
        if p["depth_multiplier"] == 1 and out.shape[0] == 1:
            return "depthwise", op.inputs[0]
    if op.kind == "conv2d" and dies(op.inputs[0]):
        p = lower(graph, op)
        if (p["filter"] == (1, 1) and p["stride"] == (1, 1) and p["pad"] == (0, 0)
                and p["in_shape"][1:3] == p["out_shape"][1:3]):
            return "pointwise", op.inputs[0]
    if op.kind == "add":
        for name in op.inputs:
            t = graph.tensors[name]
            if dies(name) and t.shape == out.shape and t.dtype == out.dtype:
                return "alias", name
    if op.kind == "reshape" and dies(op.inputs[0]):
        return "alias", op.inputs[0]
    return None


def kernel_base(op: Op, how: str | None) -> str:
    """The kernel an op calls when run in place `how` (None: out of place)."""
    return {"depthwise": "depthwise_conv2d_inplace", "pointwise": "conv2d_pointwise_inplace"}.get(how, op.kind)


def scratch_bytes(graph: Graph, index: int, how: str | None) -> int:
    """Arena bytes op `index` needs at its own step besides its tensors: the portable in-place
    kernel's temporary or the optimized kernel's working rows, whichever is larger (a build
    runs one of the two kernels)."""
    op = graph.ops[index]
    temp = 0
    if how == "depthwise":
        _, h, w, _ = graph.tensors[op.inputs[0]].shape
        temp = h * w
    elif how == "pointwise":
        temp = graph.tensors[op.outputs[0]].shape[-1]
    return max(temp, working_bytes(graph, op, kernel_base(op, how)))


# ---- buffers ---------------------------------------------------------------------------------

class _Groups:
    """Union-find over tensor names that share one buffer, each at an offset inside it."""

    def __init__(self):
        self.parent: dict[str, str] = {}
        self.offset: dict[str, int] = {}  # relative to the parent

    def find(self, name: str) -> tuple[str, int]:
        self.parent.setdefault(name, name)
        self.offset.setdefault(name, 0)
        total = 0
        while self.parent[name] != name:
            total += self.offset[name]
            name = self.parent[name]
        return name, total

    def join(self, a: str, b: str, delta: int = 0) -> None:
        """Put b's buffer `delta` bytes after a's start."""
        root_a, off_a = self.find(a)
        root_b, off_b = self.find(b)
        if root_a != root_b:
            self.parent[root_b] = root_a
            self.offset[root_b] = off_a + delta - off_b


def overlap_delta(graph: Graph, stage: PatchStage) -> int | None:
    """How far after the stage input's start the stage output may begin so that no patch
    overwrites input rows a later patch still reads (patches run in raster order): the stage
    output reuses the consumed rows of the input. None when the input must stay whole."""
    source = graph.ops[stage.first].inputs[0]
    users = [i for i, op in enumerate(graph.ops) if source in op.inputs]
    src, dst = graph.tensors[source], graph.tensors[graph.ops[stage.last].outputs[0]]
    if users != [stage.first] or source in graph.outputs or len(stage.out_regions) < 2:
        return None
    _, _, width, channels = src.shape
    _, _, out_width, out_channels = dst.shape
    delta = None
    for p in range(len(stage.out_regions) - 1):
        written = stage.out_regions[p][-1]
        last_byte = ((written.y1 - 1) * out_width + written.x1) * out_channels
        first_needed = min((stage.in_regions[q][0].y0 * width + stage.in_regions[q][0].x0) * channels
                           for q in range(p + 1, len(stage.out_regions)))
        delta = first_needed - last_byte if delta is None else min(delta, first_needed - last_byte)
    return delta


def choose_inplace(graph: Graph, stage: PatchStage | None = None) -> dict[int, tuple[str, str]]:
    """Greedy: keep an in-place op only if it does not raise the live-bytes bound (in place, the
    input's buffer grows to the output's size over the input's whole lifetime)."""
    last = last_uses(graph)
    in_stage = set(stage.ops) if stage else set()
    modes: dict[int, tuple[str, str]] = {}
    bound = lower_bound(_buffers(graph, stage, modes, last)[0])
    for i in range(len(graph.ops)):
        found = None if i in in_stage else inplace_kind(graph, i, last)
        if found:
            trial = {**modes, i: found}
            trial_bound = lower_bound(_buffers(graph, stage, trial, last)[0])
            if trial_bound <= bound:
                modes, bound = trial, trial_bound
    return modes


def build_schedule(graph: Graph, stage: PatchStage | None = None, inplace: bool | dict = True,
                   stream_input: bool = False, low_tile: bool = False) -> Schedule:
    """inplace: True to choose in-place ops, False for none, or a choice made earlier (ops of
    the stage are dropped from it). stream_input: the stage reads its input patch by patch
    through the caller's callback instead of from a full input buffer. low_tile: a patch's input
    region also gets a buffer of its own (QuantMCU's low path requantizes it there)."""
    last = last_uses(graph)
    if inplace is True:
        modes = choose_inplace(graph, stage)
    elif inplace is False:
        modes = {}
    else:
        modes = {i: m for i, m in inplace.items() if not stage or i not in stage.ops}
    if stream_input and not can_stream(graph, stage):
        raise ValueError("input streaming needs a patch stage that starts at the graph input")
    layouts = [_buffers(graph, stage, modes, last, stream_input, low_tile=low_tile)]
    if stage and not stream_input and overlap_delta(graph, stage) is not None:
        layouts.append(_buffers(graph, stage, modes, last, stream_input, overlap=True, low_tile=low_tile))
    buffers, buffer_of, scratch, sub_offset = min(layouts, key=lambda layout: lower_bound(layout[0]))
    plan = plan_memory(buffers)
    check_no_overlap(plan, buffers)
    macs = sum(op_macs(graph, op) for op in graph.ops)
    executed = macs
    if stage:
        executed += stage_executed_macs(graph, stage) - sum(op_macs(graph, graph.ops[i]) for i in stage.ops)
    tiles = {i: f"tile{i}" for i in range(stage.first, stage.last)} if stage else {}
    return Schedule(graph, stage, {i: how for i, (how, _) in modes.items()}, scratch, buffer_of, buffers,
                    plan, macs, executed, tiles, stream_input, sub_offset)


def can_stream(graph: Graph, stage: PatchStage | None) -> bool:
    if stage is None or len(graph.inputs) != 1:
        return False
    source = graph.ops[stage.first].inputs[0]
    return source == graph.inputs[0] and [i for i, op in enumerate(graph.ops) if source in op.inputs] == [stage.first]


def _buffers(graph, stage, modes, last, stream_input=False, overlap=False, low_tile=False):
    """Buffers with lifetimes for a schedule: in-place ops share their input's buffer, stage
    intermediates become tiles, ops get their scratch (see scratch_bytes) and sub-8-bit weights
    their unpacked copy, each at the op's own step; a streamed input becomes a tile of the first
    stage op's input; with overlap, the stage output shares the stage input's buffer (see
    overlap_delta); low_tile: the input tile of QuantMCU's low path. Returns (buffers, tensor ->
    buffer, scratch bytes per op, tensor -> offset inside its buffer)."""
    in_stage = set(stage.ops) if stage else set()
    tiles_of = {i: f"tile{i}" for i in range(stage.first, stage.last)} if stage else {}
    groups = _Groups()
    scratch = {}
    for i in range(len(graph.ops)):
        scratch[i] = scratch_bytes(graph, i, modes.get(i, (None,))[0])
    for i, (how, source) in modes.items():
        groups.join(source, graph.ops[i].outputs[0])
    if overlap:
        groups.join(graph.ops[stage.first].inputs[0], graph.ops[stage.last].outputs[0],
                    overlap_delta(graph, stage))
    # lifetimes per tensor (full tensors only; stage intermediates become tiles)
    spans: dict[str, list[int]] = {}

    def touch(name, step):
        lo_hi = spans.setdefault(name, [step, step])
        lo_hi[0], lo_hi[1] = min(lo_hi[0], step), max(lo_hi[1], step)

    for name in graph.inputs:
        if not stream_input:
            touch(name, 0)
    for i, op in enumerate(graph.ops):
        step = i + 1
        if stage and i in in_stage:
            if i == stage.first and not stream_input:
                touch(op.inputs[0], stage.last + 1)   # read by every patch
            if i == stage.last:
                touch(op.outputs[0], stage.first + 1)  # written from the first patch on
                touch(op.outputs[0], step)
            continue
        for name in op.inputs:
            if not graph.tensors[name].is_const:
                touch(name, step)
        for name in op.outputs:
            touch(name, step)
    for name in graph.outputs:
        touch(name, len(graph.ops) + 1)
    merged: dict[str, list[int]] = {}
    extent: dict[str, list[int]] = {}   # root -> [lowest start, highest end] of its members
    buffer_of, sub_offset = {}, {}
    for name, (lo, hi) in spans.items():
        root, offset = groups.find(name)
        buffer_of[name] = root
        sub_offset[name] = offset
        span = merged.setdefault(root, [lo, hi])
        span[0], span[1] = min(span[0], lo), max(span[1], hi)
        ext = extent.setdefault(root, [offset, offset + graph.tensors[name].nbytes])
        ext[0], ext[1] = min(ext[0], offset), max(ext[1], offset + graph.tensors[name].nbytes)
    for name in sub_offset:
        sub_offset[name] -= extent[buffer_of[name]][0]
    buffers = [Buffer(root, extent[root][1] - extent[root][0], lo, hi) for root, (lo, hi) in merged.items()]
    for i, size in scratch.items():
        if size:
            buffers.append(Buffer(f"scratch{i}", size, i + 1, i + 1))
            buffer_of[f"scratch{i}"] = f"scratch{i}"
    for i, op in enumerate(graph.ops):   # sub-8-bit weights, unpacked just before their op
        if size := unpacked_bytes(graph, op):
            buffers.append(Buffer(f"unpack{i}", size, i + 1, i + 1))
            buffer_of[f"unpack{i}"] = f"unpack{i}"
    if stage:
        for k, i in enumerate(range(stage.first, stage.last)):
            channels = graph.tensors[graph.ops[i].outputs[0]].shape[-1]
            size = max(regions[k].area for regions in stage.out_regions) * channels
            buffers.append(Buffer(tiles_of[i], size, i + 1, i + 2))
            buffer_of[tiles_of[i]] = tiles_of[i]
        source = graph.tensors[graph.ops[stage.first].inputs[0]]
        for name, wanted in (("input_tile", stream_input), ("low_tile", low_tile)):
            if wanted:
                size = max(regions[0].area for regions in stage.in_regions) * source.shape[-1]
                size *= source.nbytes // source.size
                buffers.append(Buffer(name, size, stage.first + 1, stage.first + 1))
                buffer_of[name] = name
    return buffers, buffer_of, scratch, sub_offset


# ---- search ----------------------------------------------------------------------------------

def candidate_stages(graph: Graph, max_grid: int = 8, max_ops: int = 12):
    for first in range(len(graph.ops)):
        if graph.ops[first].kind not in SPATIAL_KINDS:
            continue
        for last in range(first, min(first + max_ops, len(graph.ops))):
            if not chain_ok(graph, first, last):
                break
            oh = graph.tensors[graph.ops[last].outputs[0]].shape[1]
            for grid in range(2, min(max_grid, oh) + 1):
                yield first, last, grid


def optimistic_bound(graph: Graph, stage: PatchStage | None, stream_input: bool = False) -> int:
    """A lower bound on the arena of any in-place choice for this stage: live bytes per step with
    every legal in-place op sharing its input's bytes exactly at its own step."""
    last = last_uses(graph)
    layouts = [_buffers(graph, stage, {}, last, stream_input)[0]]
    if stage and not stream_input and overlap_delta(graph, stage) is not None:
        layouts.append(_buffers(graph, stage, {}, last, stream_input, overlap=True)[0])
    live = [min(sum(b.size for b in buffers if b.first <= step <= b.last) for buffers in layouts)
            for step in range(len(graph.ops) + 2)]
    in_stage = set(stage.ops) if stage else set()
    for i in range(len(graph.ops)):
        found = None if i in in_stage else inplace_kind(graph, i, last)
        if found:
            how, source = found
            shared = min(graph.tensors[source].nbytes, graph.tensors[graph.ops[i].outputs[0]].nbytes)
            live[i + 1] += scratch_bytes(graph, i, how) - scratch_bytes(graph, i, None) - shared
    return max(live)


def search_schedule(graph: Graph, max_mac_overhead: float = 0.10, inplace: bool = True,
                    stream_input: bool = False) -> Schedule:
    """The schedule with the smallest arena whose MAC overhead stays within the budget (no
    patching is always a candidate, except when streaming the input, which needs a stage).
    Candidates whose optimistic bound cannot beat the best arena so far are not planned."""
    best = None if stream_input else build_schedule(graph, None, inplace)
    macs = sum(op_macs(graph, op) for op in graph.ops)
    for first, last_op, grid in candidate_stages(graph):
        stage = make_stage(graph, first, last_op, grid)
        if stream_input and not can_stream(graph, stage):
            continue
        extra = stage_executed_macs(graph, stage) - sum(op_macs(graph, graph.ops[i]) for i in stage.ops)
        if macs and extra / macs > max_mac_overhead:
            continue
        if best and optimistic_bound(graph, stage, stream_input) >= best.plan.arena_bytes:
            continue
        candidate = build_schedule(graph, stage, inplace, stream_input)
        key = (candidate.plan.arena_bytes, candidate.executed_macs)
        if best is None or key < (best.plan.arena_bytes, best.executed_macs):
            best = candidate
    if best is None:
        raise ValueError("input streaming needs a patch stage that starts at the graph input, "
                         "within the MAC-overhead budget; none was found")
    return best


def parse_patch_option(graph: Graph, option: str) -> PatchStage | None:
    """'none', 'NxN@L': n x n patches of op L's output, the stage reaching back as far as the
    chain of spatial ops allows, or 'NxN@F-L': the stage of ops F..L."""
    if option == "none":
        return None
    try:
        grid_text, span = option.split("@")
        rows, cols = (int(v) for v in grid_text.lower().split("x"))
        first_text, _, last_text = span.rpartition("-")
        last = int(last_text)
        first = int(first_text) if first_text else None
    except ValueError:
        raise ValueError(f"--patch '{option}': expected auto, none, NxN@LAYER or NxN@FIRST-LAST "
                         f"(e.g. 4x4@5, 4x4@2-5)") from None
    if rows != cols or rows < 1:
        raise ValueError(f"--patch '{option}': only square n x n grids are supported")
    if not 0 <= last < len(graph.ops) or not chain_ok(graph, last, last):
        raise ValueError(f"--patch '{option}': op {last} is not a conv, depthwise conv or pool")
    earliest = earliest_first(graph, last)
    if first is None:
        first = earliest
    elif not earliest <= first <= last:
        raise ValueError(f"--patch '{option}': a stage ending at op {last} starts at an op from {earliest} to {last}")
    return make_stage(graph, first, last, rows)
