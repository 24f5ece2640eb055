"""Static arena planning over tensor lifetimes.

A buffer lives over an inclusive interval of schedule steps. Two buffers whose intervals meet
must not overlap in memory. The planner tries several placement orders with first-fit and
best-fit (TFLM's greedy planner is first-fit by decreasing size, one of them) and keeps the
smallest arena. The lower bound is the largest total of bytes live at one step.
"""
from __future__ import annotations

from dataclasses import dataclass

ALIGN = 4


def align(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


@dataclass(frozen=True)
class Buffer:
    name: str
    size: int
    first: int
    last: int

    def meets(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass
class MemoryPlan:
    offsets: dict[str, int]
    arena_bytes: int
    lower_bound_bytes: int
    strategy: str


def step_sums(spans, steps: int) -> list[int]:
    """Per step 0..steps-1, the sum of `size` over the (size, first step, last step) spans
    live at it (one pass over the spans and one over the steps: a difference array)."""
    delta = [0] * (steps + 1)
    for size, first, last in spans:
        lo, hi = max(first, 0), min(last, steps - 1)
        if lo <= hi:
            delta[lo] += size
            delta[hi + 1] -= size
    sums, running = [], 0
    for d in delta[:steps]:
        running += d
        sums.append(running)
    return sums


def live_bytes(buffers: list[Buffer], steps: int) -> list[int]:
    """Bytes of the buffers live at each of `steps` schedule steps (unaligned)."""
    return step_sums(((b.size, b.first, b.last) for b in buffers), steps)


def lower_bound(buffers: list[Buffer]) -> int:
    """The largest sum of aligned sizes live at one step."""
    if not buffers:
        return 0
    first = min(b.first for b in buffers)
    return max(step_sums(((align(b.size), b.first - first, b.last - first) for b in buffers),
                         max(b.last for b in buffers) - first + 1))


def _place(order: list[Buffer], best_fit: bool) -> dict[str, int]:
    placed: list[tuple[int, int, Buffer]] = []  # (offset, end, buffer)
    offsets = {}
    for buf in order:
        size = align(buf.size)
        busy = sorted((o, e) for o, e, other in placed if other.meets(buf))
        candidates, cursor = [], 0
        for start, end in busy:
            if start - cursor >= size:
                candidates.append((start - cursor, cursor))
            cursor = max(cursor, end)
        if best_fit and candidates:
            offset = min(candidates)[1]
        elif candidates:
            offset = candidates[0][1]
        else:
            offset = cursor
        offsets[buf.name] = offset
        placed.append((offset, offset + size, buf))
    return offsets


ORDERS = {
    "size": lambda b: (-b.size, b.first),
    "first_use": lambda b: (b.first, -b.size),
    "lifetime": lambda b: (-(b.last - b.first), -b.size),
    "area": lambda b: (-b.size * (b.last - b.first + 1), b.first),
}


EXACT_MAX_BUFFERS = 9


def _exact(buffers: list[Buffer], best_total: int) -> dict[str, int] | None:
    """Branch and bound over placement orders, each buffer at its lowest free offset. Every
    packing is reproduced by placing its buffers in order of offset this way, so this finds the
    optimum; it returns None when nothing beats best_total."""
    best: list = [best_total, None]
    placed: list[tuple[int, int, Buffer]] = []

    def lowest_offset(buf):
        cursor = 0
        for start, end in sorted((o, e) for o, e, other in placed if other.meets(buf)):
            if start - cursor >= align(buf.size):
                return cursor
            cursor = max(cursor, end)
        return cursor

    def search(remaining, top):
        if top >= best[0]:
            return
        if not remaining:
            best[0], best[1] = top, {b.name: o for o, _, b in placed}
            return
        for i, buf in enumerate(remaining):
            offset = lowest_offset(buf)
            placed.append((offset, offset + align(buf.size), buf))
            search(remaining[:i] + remaining[i + 1:], max(top, offset + align(buf.size)))
            placed.pop()

    search(sorted(buffers, key=lambda b: -b.size), 0)
    return best[1]


def plan_memory(buffers: list[Buffer]) -> MemoryPlan:
    """Several placement orders with first-fit and best-fit (TFLM's greedy planner is
    first-fit by decreasing size); an exact search when the graph is small enough."""
    bound = lower_bound(buffers)
    best = None
    for name, key in ORDERS.items():
        for best_fit in (False, True):
            offsets = _place(sorted(buffers, key=key), best_fit)
            total = max((offsets[b.name] + align(b.size) for b in buffers), default=0)
            if best is None or total < best.arena_bytes:
                best = MemoryPlan(offsets, total, bound, f"{name}/{'best' if best_fit else 'first'}-fit")
            if total == bound:
                return best
    if len(buffers) <= EXACT_MAX_BUFFERS:
        offsets = _exact(buffers, best.arena_bytes)
        if offsets is not None:
            total = max(offsets[b.name] + align(b.size) for b in buffers)
            best = MemoryPlan(offsets, total, bound, "exact")
    return best


def check_no_overlap(plan: MemoryPlan, buffers: list[Buffer]) -> None:
    """Raise if two buffers live at the same time share bytes (used by tests and as a guard)."""
    for i, a in enumerate(buffers):
        for b in buffers[i + 1:]:
            if a.meets(b):
                a0, b0 = plan.offsets[a.name], plan.offsets[b.name]
                if a0 < b0 + b.size and b0 < a0 + a.size:
                    raise AssertionError(f"buffers {a.name} and {b.name} overlap")


def graph_buffers(graph) -> list[Buffer]:
    """Lifetimes of a layer-by-layer schedule: step 0 copies the inputs in, op i runs at step
    i + 1, step len(ops) + 1 copies the outputs out."""
    first, last = {}, {}
    for name in graph.inputs:
        first[name] = last[name] = 0
    for index, op in enumerate(graph.ops, start=1):
        for name in op.inputs:
            if name in first:
                last[name] = index
        for name in op.outputs:
            first[name] = last[name] = index
    for name in graph.outputs:
        last[name] = len(graph.ops) + 1
    return [Buffer(n, graph.tensors[n].nbytes, first[n], last[n]) for n in first]
