from hypothesis import given, settings, strategies as st

from benchmarks.shared_models import INT8_MODELS
from patch_inference.memory_planner import (Buffer, align, check_no_overlap, graph_buffers,
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
