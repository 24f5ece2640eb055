"""Schedules: the order ops run in, which run in place, which run patch by patch, the kernel each
calls, and the buffers (with lifetimes) that the memory planner lays out.

Steps are numbered as in memory_planner.graph_buffers: 0 copies the inputs in, op i runs at
step i + 1, the last step copies the outputs out. A patch stage runs a chain of window ops
(conv, depthwise, pool) patch by patch: each stage op writes a small tile, the last writes its
patch of the full stage output; the rest of the network runs layer by layer.

What the C program does is the schedule's `steps` (patch_inference.steps): a Call per op, the
stage as one PatchLoop. Input streaming (stream_input) and QuantMCU's low path
(quantize.quantmcu.with_low_path) are Schedule -> Schedule transforms on them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from toolchain.ir import Graph
from toolchain.ops import lower, macs, op_def
from toolchain.ops.choice import PORTABLE, KernelChoice, KernelProfile, choose_kernel
from toolchain.ops.window import Region
from toolchain.packing import unpacked_bytes

from .memory_planner import Buffer, MemoryPlan, step_sums, align, check_no_overlap, live_bytes, lower_bound, plan_memory
from .steps import Call, InputReader, PatchLoop, Step, stage_views

INPUT_TILE = "input_tile"   # the streamed input's patch (stream_input)


@dataclass
class PatchStage:
    first: int                     # first op index of the stage
    last: int                      # last op index (its output is assembled in full)
    grid: int                      # n x n patches of the stage output
    out_regions: list[list[Region]]  # [patch][k]: output region of stage op first + k
    in_regions: list[list[Region]]   # [patch][k]: input region it reads
    reaches_back: bool = True        # first is as early as the chain of window ops allows

    @property
    def ops(self) -> range:
        return range(self.first, self.last + 1)

    @property
    def label(self) -> str:
        """The --patch option that gives this stage: NxN@LAST, or NxN@FIRST-LAST for a stage
        that starts later than the chain allows."""
        span = f"{self.last}" if self.reaches_back else f"{self.first}-{self.last}"
        return f"{self.grid}x{self.grid}@{span}"

    def tile(self, index: int) -> str:
        """The buffer stage op `index` (not the last) writes its patch into."""
        return f"tile{index}"

    def source(self, graph: Graph) -> str:
        return graph.ops[self.first].inputs[0]


@dataclass(frozen=True)
class Schedule:
    graph: Graph
    stage: PatchStage | None
    inplace: dict[int, tuple[str, str]]  # op index -> (in-place mode: "depthwise" | "pointwise" |
                                         # "alias", the input whose buffer it takes)
    kernels: dict[int, KernelChoice]  # op index -> the kernel it calls (its scratch: work_bytes)
    profile: KernelProfile
    buffer_of: dict[str, str]        # tensor (or tile, scratch) name -> buffer name
    buffers: list[Buffer]
    plan: MemoryPlan
    macs: int
    executed_macs: int
    steps: tuple[Step, ...]
    sub_offset: dict[str, int] = field(default_factory=dict)  # tensor -> offset inside its buffer
    stream_input: bool = False       # the stage reads the graph input patch by patch (INPUT_TILE)
    region_tiles: tuple[str, ...] = ()   # buffers of one stage-input region each (INPUT_TILE, QuantMCU's)
    quantmcu: object = None          # the stage's QuantMCU low path (quantize.quantmcu.LowPath), if any

    def offset(self, name: str) -> int:
        return self.plan.offsets[self.buffer_of[name]] + self.sub_offset.get(name, 0)

    @property
    def mac_overhead(self) -> float:
        return self.executed_macs / self.macs - 1.0 if self.macs else 0.0

    @property
    def patch_loop(self) -> PatchLoop | None:
        return next((s for s in self.steps if isinstance(s, PatchLoop)), None)

    def live_bytes(self) -> list[int]:
        """Bytes of buffers live at each step."""
        return live_bytes(self.buffers, len(self.graph.ops) + 2)


# ---- patch stages ----------------------------------------------------------------------------

def chain_links(graph: Graph) -> tuple[tuple[bool, ...], tuple[bool, ...]]:
    """Per op: whether it can be in a stage (a window op on batch 1), and whether it can follow
    the op before it in one (it reads only that op's output, which nothing else reads and is not
    a graph output). Derived once per graph."""
    def compute():
        readers: dict[str, int] = {}
        for op in graph.ops:
            for name in op.inputs:
                readers[name] = readers.get(name, 0) + 1
        window = tuple(op_def(op.kind).window and graph.tensors[op.inputs[0]].shape[0] == 1 for op in graph.ops)
        follows = [False]
        for i in range(1, len(graph.ops)):
            prev_out, op = graph.ops[i - 1].outputs[0], graph.ops[i]
            follows.append(op.inputs[0] == prev_out and prev_out not in graph.outputs
                           and readers[prev_out] == op.inputs.count(prev_out))
        return window, tuple(follows)
    return graph.derived("chain_links", None, compute)


def chain_ok(graph: Graph, first: int, last: int) -> bool:
    """ops[first..last] are window ops on batch 1, each feeding only the next."""
    window, follows = chain_links(graph)
    return all(window[first:last + 1]) and all(follows[first + 1:last + 1])


def split_even(size: int, n: int) -> list[tuple[int, int]]:
    bounds = [round(i * size / n) for i in range(n + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(n) if bounds[i + 1] > bounds[i]]


def make_stage(graph: Graph, first: int, last: int, grid: int) -> PatchStage:
    """The stage of ops first..last, grid x grid patches of op last's output, with every
    patch's region per op. Derived once per graph and (first, last, grid); the stages that end
    at the same op on the same grid share one walk back from it."""
    earliest = earliest_first(graph, last)
    if not earliest <= first <= last:
        raise ValueError(f"ops {first}..{last} are not a chain of window ops")

    def compute():
        rows, cols = stage_bands(graph, earliest, last, grid)
        k = first - earliest

        def cross(r, c):
            return Region(r.y0, r.y1, c.x0, c.x1)
        out_regions = [[cross(ro, co) for (ro, _), (co, _) in zip(row[k:], col[k:])] for row in rows for col in cols]
        in_regions = [[cross(ri, ci) for (_, ri), (_, ci) in zip(row[k:], col[k:])] for row in rows for col in cols]
        return PatchStage(first, last, grid, out_regions, in_regions, k == 0)
    return graph.derived("stage", (first, last, grid), compute)


def stage_bands(graph: Graph, first: int, last: int, grid: int) -> tuple[list, list]:
    """The regions of a grid x grid split of op last's output, by band: per row band (all
    columns) and per column band (all rows), [(output region, input region)] of every op from
    first to last. A window op's rows read depend on its rows only and its columns on its
    columns, so patch (r, c) of an op is rows from band r and columns from band c."""
    def compute():
        ops = [graph.ops[i] for i in range(first, last + 1)]
        params = [lower(graph, op) for op in ops]
        _, oh, ow, _ = graph.tensors[graph.ops[last].outputs[0]].shape

        def walk(region):
            chain = []
            for op, p in zip(reversed(ops), reversed(params)):
                read = op_def(op.kind).input_region(p, region)
                chain.append((region, read))
                region = read
            return chain[::-1]
        return ([walk(Region(y0, y1, 0, ow)) for y0, y1 in split_even(oh, grid)],
                [walk(Region(0, oh, x0, x1)) for x0, x1 in split_even(ow, grid)])
    return graph.derived("stage bands", (first, last, grid), compute)


def executed_macs(graph: Graph, first: int, last: int, grid: int) -> int:
    """The MACs ops first..last execute as a grid x grid stage (halos recomputed per patch):
    per op, MACs per output pixel x the summed patch areas (the rows' heights summed x the
    columns' widths summed: every patch is a row band crossed with a column band)."""
    def compute():
        earliest = earliest_first(graph, last)
        rows, cols = stage_bands(graph, earliest, last, grid)
        total = 0
        for k, i in enumerate(range(first, last + 1), start=first - earliest):
            out = graph.tensors[graph.ops[i].outputs[0]]
            per_pixel = op_macs(graph)[i] // (out.shape[1] * out.shape[2])
            height = sum(max(row[k][0].y1 - row[k][0].y0, 0) for row in rows)
            width = sum(max(col[k][0].x1 - col[k][0].x0, 0) for col in cols)
            total += per_pixel * height * width
        return total
    return graph.derived("executed macs", (first, last, grid), compute)


def op_macs(graph: Graph) -> tuple[int, ...]:
    """MACs per op, derived once per graph."""
    return graph.derived("macs", None, lambda: tuple(macs(graph, op) for op in graph.ops))


def earliest_first(graph: Graph, last: int) -> int:
    """The first op of the longest stage chain that ends at op `last`."""
    window, follows = chain_links(graph)
    first = last
    while window[last] and first > 0 and follows[first] and window[first - 1]:
        first -= 1
    return first


def stage_executed_macs(graph: Graph, stage: PatchStage) -> int:
    """The MACs the stage's ops execute over all patches (overlapping halos counted per patch)."""
    return executed_macs(graph, stage.first, stage.last, stage.grid)


# ---- in-place execution ----------------------------------------------------------------------

def last_uses(graph: Graph) -> dict[str, int]:
    """The index of the last op reading each tensor (len(ops) for graph outputs). Derived once
    per graph: do not change the dict returned."""
    def compute():
        last = {}
        for i, op in enumerate(graph.ops):
            for name in op.inputs:
                last[name] = i
        for name in graph.outputs:
            last[name] = len(graph.ops)
        return last
    return graph.derived("last_uses", None, compute)


def inplace_kind(graph: Graph, index: int) -> tuple[str, str] | None:
    """(in-place mode, which input) when op `index` can overwrite a dying input, else None.
    Derived once per graph and op."""
    op = graph.ops[index]
    can = op_def(op.kind).inplace
    if can is None:
        return None
    last = last_uses(graph)

    def dies(name):
        t = graph.tensors[name]
        return not t.is_const and last.get(name) == index and name not in graph.outputs
    return graph.derived("inplace", op, lambda: can(graph, op, dies))


KernelTable = dict[tuple[int, "str | None"], KernelChoice]


def kernel_table(graph: Graph, profile: KernelProfile) -> KernelTable:
    """The kernel of every op out of place, and in place where it can be: the choices a schedule
    of this graph takes its kernels (and scratch sizes) from. Derived once per graph and profile:
    do not change it."""
    return graph.derived("kernel table", profile, lambda: _kernel_table(graph, profile))


def _kernel_table(graph: Graph, profile: KernelProfile) -> KernelTable:
    table = {}
    for i, op in enumerate(graph.ops):
        table[i, None] = choose_kernel(graph, op, None, profile)
        found = inplace_kind(graph, i)
        if found:
            table[i, found[0]] = choose_kernel(graph, op, found[0], profile)
    return table


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
    return graph.derived("overlap_delta", stage, lambda: _overlap_delta(graph, stage))


def _overlap_delta(graph: Graph, stage: PatchStage) -> int | None:
    source = stage.source(graph)
    src, dst = graph.tensors[source], graph.tensors[graph.ops[stage.last].outputs[0]]
    if graph.consumers(source) != [stage.first] or source in graph.outputs or len(stage.out_regions) < 2:
        return None
    _, _, width, channels = src.shape
    _, _, out_width, out_channels = dst.shape
    delta, first_needed = None, None   # first_needed: over the patches after p, walking back
    for p in range(len(stage.out_regions) - 2, -1, -1):
        later = stage.in_regions[p + 1][0]
        start = (later.y0 * width + later.x0) * channels
        first_needed = start if first_needed is None else min(first_needed, start)
        written = stage.out_regions[p][-1]
        last_byte = ((written.y1 - 1) * out_width + written.x1) * out_channels
        delta = first_needed - last_byte if delta is None else min(delta, first_needed - last_byte)
    return delta


def choose_inplace(graph: Graph, stage: PatchStage | None, table: KernelTable) -> dict[int, tuple[str, str]]:
    """Greedy: keep an in-place op only if it does not raise the live-bytes bound (in place, the
    input's buffer grows to the output's size over the input's whole lifetime). Each trial
    updates the per-step sums of the buffers it merges, so a trial costs one pass over the steps."""
    in_stage = stage.ops if stage else range(0)
    buffers, _, _ = _buffers(graph, stage, {}, table)
    steps = max(b.last for b in buffers) + 1
    sums = step_sums(((align(b.size), b.first, b.last) for b in buffers), steps)
    group = {b.name: (b.size, b.first, b.last) for b in buffers if b.name in graph.tensors}
    root: dict[str, str] = {}

    def find(name):
        while name in root:
            name = root[name]
        return name

    def add(values, size, lo, hi, sign):
        for step in range(lo, hi + 1):
            values[step] += sign * align(size)

    modes: dict[int, tuple[str, str]] = {}
    bound = max(sums)
    for i in range(len(graph.ops)):
        found = None if i in in_stage else inplace_kind(graph, i)
        if not found:
            continue
        a, b = find(found[1]), find(graph.ops[i].outputs[0])
        (size_a, lo_a, hi_a), (size_b, lo_b, hi_b) = group[a], group[b]
        merged = (max(size_a, size_b), min(lo_a, lo_b), max(hi_a, hi_b))
        trial = list(sums)
        add(trial, *group[a], -1)
        add(trial, *group[b], -1)
        add(trial, *merged, +1)
        trial[i + 1] += align(table[i, found[0]].work_bytes) - align(table[i, None].work_bytes)
        if max(trial) <= bound:
            modes[i], sums, bound = found, trial, max(trial)
            root[b], group[a] = a, merged
            del group[b]
    return modes


def build_schedule(graph: Graph, stage: PatchStage | None = None, inplace: bool | dict = True,
                   profile: KernelProfile = PORTABLE, table: KernelTable | None = None) -> Schedule:
    """inplace: True to choose in-place ops, False for none, or a choice made earlier (ops of
    the stage are dropped from it). profile: the target's kernels (their working buffers);
    table: kernel_table(graph, profile), when the caller has it."""
    table = kernel_table(graph, profile) if table is None else table
    if inplace is True:
        modes = choose_inplace(graph, stage, table)
    elif inplace is False:
        modes = {}
    else:
        modes = {i: m for i, m in inplace.items() if not stage or i not in stage.ops}
    kernels = {i: table[i, modes.get(i, (None,))[0]] for i in range(len(graph.ops))}
    total = sum(op_macs(graph))
    executed = total
    if stage:
        executed += stage_executed_macs(graph, stage) - sum(op_macs(graph)[stage.first:stage.last + 1])
    schedule = Schedule(graph, stage, modes, kernels, profile, {}, [], MemoryPlan({}, 0, 0, ""), total, executed,
                        layer_steps(graph, stage, modes, kernels))
    return laid_out(schedule)


def layer_steps(graph: Graph, stage: PatchStage | None, modes, kernels) -> tuple[Step, ...]:
    """A Call per op, the stage's ops as one PatchLoop over their tiles."""
    steps, index = [], 0
    while index < len(graph.ops):
        if stage is not None and index == stage.first:
            body = tuple(Call(i, kernels[i], views=stage_views(graph, stage, k)) for k, i in enumerate(stage.ops))
            tiles = tuple((graph.ops[i].outputs[0], stage.tile(i)) for i in range(stage.first, stage.last))
            steps.append(PatchLoop(stage.label, len(stage.out_regions), body, buffers=tiles))
            index = stage.last + 1
        else:
            steps.append(Call(index, kernels[index], inplace=modes.get(index, (None,))[0]))
            index += 1
    return tuple(steps)


def laid_out(schedule: Schedule) -> Schedule:
    """The schedule with its buffers and arena plan (the smallest of the layouts it allows)."""
    graph, stage = schedule.graph, schedule.stage
    modes = schedule.inplace
    table = {(i, modes.get(i, (None,))[0]): choice for i, choice in schedule.kernels.items()}
    layouts = [_buffers(graph, stage, modes, table, schedule.stream_input, region_tiles=schedule.region_tiles)]
    if stage and not schedule.stream_input and overlap_delta(graph, stage) is not None:
        layouts.append(_buffers(graph, stage, modes, table, schedule.stream_input, overlap=True,
                                region_tiles=schedule.region_tiles))
    buffers, buffer_of, sub_offset = min(layouts, key=lambda layout: lower_bound(layout[0]))
    plan = plan_memory(buffers)
    check_no_overlap(plan, buffers)
    return replace(schedule, buffers=buffers, buffer_of=buffer_of, sub_offset=sub_offset, plan=plan)


LEAN_MIN_SAVING = 0.10   # a portable kernel replaces a fast one only if the arena shrinks by this much


def with_lean_kernels(schedule: Schedule, min_saving: float = LEAN_MIN_SAVING) -> Schedule:
    """The schedule with the portable kernel (no working buffer: it reads its operands in place)
    for each op whose optimized kernel's working buffer sets the arena, largest buffer first,
    kept only where the arena shrinks by at least `min_saving` of it (the portable kernels are
    slower: a few bytes are not worth it). Every kernel is byte-exact, so only speed changes."""
    graph, best = schedule.graph, schedule
    heavy = sorted((i for i, k in schedule.kernels.items() if k.spec is not None), key=lambda i: -schedule.kernels[i].work_bytes)
    for i in heavy:
        choice = best.kernels[i]
        c = op_def(graph.ops[i].kind).c
        temp = c.temp_bytes(graph, graph.ops[i], best.inplace.get(i, (None,))[0]) if c.temp_bytes else 0
        if choice.work_bytes <= temp:
            continue
        lean = KernelChoice(choice.variant, None, temp)
        kernels = {**best.kernels, i: lean}
        trial = laid_out(replace(best, kernels=kernels, steps=_with_kernel(best.steps, i, lean)))
        if trial.plan.arena_bytes <= best.plan.arena_bytes * (1 - min_saving):
            best = trial
    return best


def _with_kernel(steps: tuple[Step, ...], index: int, choice: KernelChoice) -> tuple[Step, ...]:
    """The steps with op `index` calling `choice` (inside patch loops too)."""
    def one(step):
        if isinstance(step, PatchLoop):
            return replace(step, body=tuple(one(c) for c in step.body), alt_body=tuple(one(c) for c in step.alt_body))
        return replace(step, kernel=choice) if step.op == index and step.graph is None else step
    return tuple(one(step) for step in steps)


def can_stream(graph: Graph, stage: PatchStage | None) -> bool:
    if stage is None or len(graph.inputs) != 1:
        return False
    source = stage.source(graph)
    return source == graph.inputs[0] and [i for i, op in enumerate(graph.ops) if source in op.inputs] == [stage.first]


def stream_input(schedule: Schedule) -> Schedule:
    """The stage reads the graph input patch by patch, each patch's input region through the
    caller's reader into INPUT_TILE, so the whole input never sits in the arena."""
    graph, stage = schedule.graph, schedule.stage
    if not can_stream(graph, stage):
        raise ValueError("input streaming needs a patch stage that starts at the graph input")
    source = stage.source(graph)
    steps = []
    for step in schedule.steps:
        if isinstance(step, PatchLoop):
            first = replace(step.body[0], views=stage_views(graph, stage, 0, streamed=True))
            step = replace(step, body=(first,) + step.body[1:], buffers=step.buffers + ((source, INPUT_TILE),),
                           reader=InputReader(source, INPUT_TILE, tuple(ins[0] for ins in stage.in_regions)))
        steps.append(step)
    return laid_out(replace(schedule, steps=tuple(steps), stream_input=True,
                            region_tiles=schedule.region_tiles + (INPUT_TILE,)))


def with_region_tile(schedule: Schedule, name: str) -> Schedule:
    """The schedule with one more buffer that holds a patch's stage-input region (live while the
    stage's first op runs), laid out anew."""
    return laid_out(replace(schedule, region_tiles=schedule.region_tiles + (name,)))


def _lifetimes(graph: Graph, stage: PatchStage | None, stream_input: bool) -> dict[str, list[int]]:
    """[first step, last step] of every full tensor (stage intermediates become tiles): the stage
    input is read by every patch, the stage output written from the first patch on; a streamed
    input is never in the arena. Derived once per graph, stage and streaming: do not change it."""
    return graph.derived("streamed lifetimes" if stream_input else "lifetimes", stage,
                         lambda: _tensor_lifetimes(graph, stage, stream_input))


def _tensor_lifetimes(graph: Graph, stage: PatchStage | None, stream_input: bool) -> dict[str, list[int]]:
    in_stage = set(stage.ops) if stage else set()
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
    return spans


def _buffers(graph, stage, modes, table, stream_input=False, overlap=False, region_tiles=()):
    """Buffers with lifetimes for a schedule: in-place ops share their input's buffer, stage
    intermediates become tiles, ops get their scratch (their kernel's work_bytes, from `table`)
    and sub-8-bit weights their unpacked copy, each at the op's own step; a streamed input is not
    in the arena; with overlap, the stage output shares the stage input's buffer (see
    overlap_delta); region_tiles: buffers of one stage-input region each (the streamed input's
    tile, QuantMCU's low-path tile). Returns (buffers, tensor -> buffer, tensor -> offset inside
    its buffer)."""
    buffers, buffer_of, sub_offset = _tensor_buffers(graph, stage, modes, stream_input, overlap)
    for b in _own_buffers(graph, stage, modes, table, region_tiles):
        buffers.append(b)
        buffer_of[b.name] = b.name
    return buffers, buffer_of, sub_offset


def _own_buffers(graph, stage, modes, table, region_tiles) -> list[Buffer]:
    """The buffers that are no tensor's: with a table, each op's scratch (its kernel's
    work_bytes, in place where modes says) and unpacked sub-8-bit weights; with a stage, the
    tiles and region tiles."""
    buffers = []
    if table is not None:
        for i in range(len(graph.ops)):
            if size := table[i, modes.get(i, (None,))[0]].work_bytes:
                buffers.append(Buffer(f"scratch{i}", size, i + 1, i + 1))
        for i, size in _unpacked_sizes(graph):   # sub-8-bit weights, unpacked just before their op
            buffers.append(Buffer(f"unpack{i}", size, i + 1, i + 1))
    if stage:
        for name, size, first, last_step in _stage_tiles(graph, stage):
            buffers.append(Buffer(name, size, first, last_step))
        region_bytes = _region_tile_bytes(graph, stage)
        for name in region_tiles:
            buffers.append(Buffer(name, region_bytes, stage.first + 1, stage.first + 1))
    return buffers


def _tensor_buffers(graph, stage, modes, stream_input, overlap):
    """The tensors' part of _buffers: one buffer per group of tensors sharing bytes."""
    groups = _Groups()
    for i, (_, source) in modes.items():
        groups.join(source, graph.ops[i].outputs[0])
    if overlap:
        groups.join(stage.source(graph), graph.ops[stage.last].outputs[0], overlap_delta(graph, stage))
    spans = _lifetimes(graph, stage, stream_input)
    nbytes = _tensor_bytes(graph)
    merged: dict[str, list[int]] = {}
    extent: dict[str, list[int]] = {}   # root -> [lowest start, highest end] of its members
    buffer_of, sub_offset = {}, {}
    for name, (lo, hi) in spans.items():
        root, offset = groups.find(name) if name in groups.parent else (name, 0)
        buffer_of[name] = root
        sub_offset[name] = offset
        span = merged.setdefault(root, [lo, hi])
        span[0], span[1] = min(span[0], lo), max(span[1], hi)
        ext = extent.setdefault(root, [offset, offset + nbytes[name]])
        ext[0], ext[1] = min(ext[0], offset), max(ext[1], offset + nbytes[name])
    for name in sub_offset:
        sub_offset[name] -= extent[buffer_of[name]][0]
    buffers = [Buffer(root, extent[root][1] - extent[root][0], lo, hi) for root, (lo, hi) in merged.items()]
    return buffers, buffer_of, sub_offset


def _tensor_bytes(graph: Graph) -> dict[str, int]:
    return graph.derived("tensor bytes", None, lambda: {name: t.nbytes for name, t in graph.tensors.items()})


def _unpacked_sizes(graph: Graph) -> tuple[tuple[int, int], ...]:
    """(op index, bytes) of every op whose sub-8-bit weights are unpacked before it runs."""
    return graph.derived("unpacked sizes", None, lambda: tuple(
        (i, size) for i, op in enumerate(graph.ops) if (size := unpacked_bytes(graph, op))))


def _stage_tiles(graph: Graph, stage: PatchStage) -> tuple[tuple[str, int, int, int], ...]:
    """(buffer, bytes, first step, last step) of the tile each stage op but the last writes."""
    def compute():
        tiles = []
        for k, i in enumerate(range(stage.first, stage.last)):
            channels = graph.tensors[graph.ops[i].outputs[0]].shape[-1]
            tiles.append((stage.tile(i), max(regions[k].area for regions in stage.out_regions) * channels, i + 1, i + 2))
        return tuple(tiles)
    return graph.derived("stage tiles", stage, compute)


def _region_tile_bytes(graph: Graph, stage: PatchStage) -> int:
    """Bytes of one patch's stage-input region (the largest)."""
    def compute():
        source = graph.tensors[stage.source(graph)]
        size = max(regions[0].area for regions in stage.in_regions) * source.shape[-1]
        return size * (source.nbytes // source.size)
    return graph.derived("region tile", stage, compute)


# ---- search ----------------------------------------------------------------------------------

def candidate_stages(graph: Graph, max_grid: int = 8, max_ops: int = 12):
    for first in range(len(graph.ops)):
        if not op_def(graph.ops[first].kind).window:
            continue
        for last in range(first, min(first + max_ops, len(graph.ops))):
            if not chain_ok(graph, first, last):
                break
            oh = graph.tensors[graph.ops[last].outputs[0]].shape[1]
            for grid in range(2, min(max_grid, oh) + 1):
                yield first, last, grid


def optimistic_bound(graph: Graph, stage: PatchStage | None, table: KernelTable, streamed: bool = False) -> int:
    """A lower bound on the arena of any in-place choice for this stage: live bytes per step with
    every legal in-place op sharing its input's bytes exactly at its own step. Live bytes add up
    over buffers, so the layouts' tensor buffers (the stage's own, derived once), the kernels'
    working buffers (the table's) and the stage's tiles are summed per step."""
    steps = len(graph.ops) + 2

    def tensor_live():   # no tensor shares bytes with another: one buffer per tensor
        nbytes = _tensor_bytes(graph)
        return step_sums(((nbytes[name], lo, hi) for name, (lo, hi) in _lifetimes(graph, stage, streamed).items()), steps)
    layouts = [graph.derived("tensor live streamed" if streamed else "tensor live", stage, tensor_live)]
    if stage and not streamed and overlap_delta(graph, stage) is not None:
        layouts.append(graph.derived("tensor live overlapped", stage, lambda: live_bytes(
            _tensor_buffers(graph, stage, {}, streamed, True)[0], steps)))
    fixed = graph.derived("work live", table, lambda: live_bytes(_own_buffers(graph, None, {}, table, ()), steps))
    region_tiles = (INPUT_TILE,) if streamed else ()
    own = graph.derived("stage live streamed" if streamed else "stage live", stage, lambda: live_bytes(
        _own_buffers(graph, stage, None, None, region_tiles), steps)) if stage else [0] * steps
    live = [min(per_step) + f + o for per_step, f, o in zip(zip(*layouts), fixed, own)]
    in_stage = stage.ops if stage else range(0)
    for i, saved in inplace_savings(graph, table):
        if i not in in_stage:
            live[i + 1] -= saved
    return max(live)


def inplace_savings(graph: Graph, table: KernelTable) -> list[tuple[int, int]]:
    """(op, bytes) for every op that can run in place: the bytes it saves at its own step at
    best (the input's bytes it shares, less the extra working buffer of its in-place kernel).
    Derived once per graph and kernel table."""
    return graph.derived("inplace savings", table, lambda: _inplace_savings(graph, table))


def _inplace_savings(graph: Graph, table: KernelTable) -> list[tuple[int, int]]:
    savings = []
    for i in range(len(graph.ops)):
        found = inplace_kind(graph, i)
        if found:
            mode, source = found
            shared = min(graph.tensors[source].nbytes, graph.tensors[graph.ops[i].outputs[0]].nbytes)
            savings.append((i, shared - (table[i, mode].work_bytes - table[i, None].work_bytes)))
    return savings


OBJECTIVES = ("memory", "speed", "balanced")


def objective_key(objective: str, arena: int, executed: int) -> tuple:
    """What the search minimizes: memory, the arena (then MACs); speed, the executed MACs (then
    the arena: patches recompute their halos, so the fewest MACs run fastest on the same
    kernels); balanced, arena x MACs (then the arena)."""
    if objective == "memory":
        return (arena, executed)
    if objective == "speed":
        return (executed, arena)
    return (arena * executed, arena)


def _cannot_win(objective: str, bound: int, executed: int, best: Schedule) -> bool:
    """A candidate with this optimistic arena bound and these MACs cannot beat `best` (memory:
    its bound already reaches the best arena, as the search has always cut)."""
    if objective == "memory":
        return bound >= best.plan.arena_bytes
    return objective_key(objective, bound, executed) >= objective_key(objective, best.plan.arena_bytes,
                                                                       best.executed_macs)


def search_schedule(graph: Graph, max_mac_overhead: float = 0.10, inplace: bool = True,
                    profile: KernelProfile = PORTABLE, streamed: bool = False, objective: str = "memory",
                    arena_budget: int | None = None) -> Schedule | None:
    """The schedule the objective prefers (objective_key) among those whose MAC overhead stays
    within the budget (no patching is always a candidate, except when streaming the input, which
    needs a stage) and, given arena_budget, whose arena fits it (None: none fits). Candidates
    whose MACs and optimistic arena bound cannot beat the best so far, or cannot fit, are not
    planned."""
    table = kernel_table(graph, profile)
    best = None if streamed else build_schedule(graph, None, inplace, profile, table)
    if best is not None and arena_budget is not None and best.plan.arena_bytes > arena_budget:
        best = None
    total = sum(op_macs(graph))
    for first, last_op, grid in candidate_stages(graph):
        executed = total + executed_macs(graph, first, last_op, grid) - sum(op_macs(graph)[first:last_op + 1])
        if total and (executed - total) / total > max_mac_overhead:
            continue
        if best and objective == "speed" and executed > best.executed_macs:
            continue
        stage = make_stage(graph, first, last_op, grid)
        if streamed and not can_stream(graph, stage):
            continue
        bound = optimistic_bound(graph, stage, table, streamed) if best or arena_budget is not None else None
        if (best and _cannot_win(objective, bound, executed, best)) or \
                (arena_budget is not None and bound > arena_budget):
            continue
        candidate = build_schedule(graph, stage, inplace, profile, table)
        if streamed:
            candidate = stream_input(candidate)
        if arena_budget is not None and candidate.plan.arena_bytes > arena_budget:
            continue
        key = objective_key(objective, candidate.plan.arena_bytes, candidate.executed_macs)
        if best is None or key < objective_key(objective, best.plan.arena_bytes, best.executed_macs):
            best = candidate
    if best is None and arena_budget is None:
        raise ValueError("input streaming needs a patch stage that starts at the graph input, "
                         "within the MAC-overhead budget; none was found")
    return best


def parse_patch_option(graph: Graph, option: str) -> PatchStage | None:
    """'none', 'NxN@L': n x n patches of op L's output, the stage reaching back as far as the
    chain of window ops allows, or 'NxN@F-L': the stage of ops F..L."""
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
