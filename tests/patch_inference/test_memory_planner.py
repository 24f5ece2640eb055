from hypothesis import given, settings, strategies as st

from benchmarks.shared_models import INT8_MODELS
from patch_inference.memory_planner import (Buffer, align, check_no_overlap, graph_buffers, live_bytes,
                                            lower_bound, plan_memory)
from toolchain.importers import load_model


@st.composite
def buffer_sets(draw):
    n = draw(st.integers(1, 14))
    out = []
    for i in range(n):
        first = draw(st.integers(0, 12))
        out.append(Buffer(f"b{i}", draw(st.integers(1, 5000)), first, first + draw(st.integers(0, 6))))
    return out


@settings(max_examples=200, deadline=None)
@given(buffer_sets())
def test_live_buffers_never_overlap_and_arena_respects_bound(buffers):
    plan = plan_memory(buffers)
    check_no_overlap(plan, buffers)
    assert plan.arena_bytes >= lower_bound(buffers)
    assert all(offset % 4 == 0 for offset in plan.offsets.values())
    # never worse than the sum of all buffers (no sharing at all)
    assert plan.arena_bytes <= sum(align(b.size) for b in buffers)


@settings(max_examples=200, deadline=None)
@given(buffer_sets())
def test_live_bytes_and_bound_equal_summing_every_step(buffers):
    steps = max(b.last for b in buffers) + 3
    assert live_bytes(buffers, steps) == [sum(b.size for b in buffers if b.first <= s <= b.last) for s in range(steps)]
    assert lower_bound(buffers) == max(sum(align(b.size) for b in buffers if b.first <= s <= b.last)
                                       for s in range(min(b.first for b in buffers), steps))


def test_disjoint_lifetimes_share_memory():
    buffers = [Buffer("a", 100, 0, 1), Buffer("b", 100, 2, 3), Buffer("c", 40, 1, 2)]
    plan = plan_memory(buffers)
    assert plan.arena_bytes == 140 == plan.lower_bound_bytes


def test_overlap_check_catches_a_bad_plan():
    from patch_inference.memory_planner import MemoryPlan
    buffers = [Buffer("a", 8, 0, 2), Buffer("b", 8, 1, 3)]
    bad = MemoryPlan({"a": 0, "b": 4}, 12, 16, "hand-made")
    try:
        check_no_overlap(bad, buffers)
    except AssertionError:
        return
    raise AssertionError("overlap not detected")


def test_shared_models_reach_the_lower_bound():
    for name, path in INT8_MODELS.items():
        buffers = graph_buffers(load_model(path))
        plan = plan_memory(buffers)
        check_no_overlap(plan, buffers)
        assert plan.arena_bytes == plan.lower_bound_bytes, name


def brute_force_optimum(buffers):
    """Every assignment of offsets among the subset sums of sizes (an optimal packing can be
    pushed down until each buffer rests on others): the smallest arena that fits."""
    import itertools
    sizes = [align(b.size) for b in buffers]
    grid = sorted({sum(c) for r in range(len(sizes)) for c in itertools.combinations(sizes, r)})
    best = None
    for offsets in itertools.product(grid, repeat=len(buffers)):
        total = max(o + align(b.size) for o, b in zip(offsets, buffers))
        if best is not None and total >= best:
            continue
        ok = all(not (a.meets(b) and oa < ob + align(b.size) and ob < oa + align(a.size))
                 for (oa, a), (ob, b) in itertools.combinations(zip(offsets, buffers), 2))
        if ok:
            best = total
    return best


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([4, 8, 12, 20]), st.integers(0, 4), st.integers(0, 3)),
                min_size=2, max_size=5))
def test_small_graphs_are_planned_optimally(specs):
    buffers = [Buffer(f"b{i}", size, first, first + length) for i, (size, first, length) in enumerate(specs)]
    plan = plan_memory(buffers)
    check_no_overlap(plan, buffers)
    assert plan.arena_bytes == brute_force_optimum(buffers)


def test_exact_search_beats_every_greedy_order_where_they_fall_short():
    from patch_inference import memory_planner as mp
    specs = [(12, 2, 3), (16, 1, 2), (12, 1, 4), (20, 5, 5), (20, 4, 5), (16, 2, 4), (16, 5, 7)]
    buffers = [Buffer(f"b{i}", size, first, last) for i, (size, first, last) in enumerate(specs)]
    greedy = min(max(o[b.name] + align(b.size) for b in buffers)
                 for o in (mp._place(sorted(buffers, key=key), fit) for key in mp.ORDERS.values()
                           for fit in (False, True)))
    plan = plan_memory(buffers)
    check_no_overlap(plan, buffers)
    assert greedy == 60 and plan.arena_bytes == 56 == plan.lower_bound_bytes and plan.strategy == "exact"
