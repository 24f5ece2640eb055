"""The schedule search's shortcuts equal their definitions: stage regions from row and column
bands equal walking back from every patch, the executed MACs from band sums equal summing patch
areas, the incremental in-place greedy equals rebuilding the buffers per trial, and the
optimistic bound equals summing the live bytes of every buffer (and stays below the plan)."""
import pytest

from benchmarks.shared_models import INT8_MODELS
from patch_inference import schedule as S
from patch_inference.memory_planner import live_bytes, lower_bound
from targets.registry import get_target
from toolchain.driver import pipeline
from toolchain.ops import lower, op_def
from toolchain.ops.window import Region

MODELS = ["vww_96_int8", "resnet8_int8", "mcunet_vww1_int8"]
PROFILES = [get_target("cortex-m4").kernel_profile, get_target("host").kernel_profile]


def graph_of(name):
    return pipeline.optimize(pipeline.prepare_graph(INT8_MODELS[name], "int8"))


def some_stages(graph, every=7):
    return [S.make_stage(graph, *c) for c in list(S.candidate_stages(graph))[::every]]


def walked_regions(graph, stage):
    """Per patch, walk back from its output region through every stage op."""
    _, oh, ow, _ = graph.tensors[graph.ops[stage.last].outputs[0]].shape
    outs_all, ins_all = [], []
    for y0, y1 in S.split_even(oh, stage.grid):
        for x0, x1 in S.split_even(ow, stage.grid):
            region, outs, ins = Region(y0, y1, x0, x1), [], []
            for i in reversed(stage.ops):
                outs.append(region)
                region = op_def(graph.ops[i].kind).input_region(lower(graph, graph.ops[i]), region)
                ins.append(region)
            outs_all.append(outs[::-1])
            ins_all.append(ins[::-1])
    return outs_all, ins_all


def greedy_by_rebuilding(graph, stage, table):
    modes, bound = {}, lower_bound(S._buffers(graph, stage, {}, table)[0])
    for i in range(len(graph.ops)):
        found = None if stage and i in stage.ops else S.inplace_kind(graph, i)
        if found:
            trial = {**modes, i: found}
            trial_bound = lower_bound(S._buffers(graph, stage, trial, table)[0])
            if trial_bound <= bound:
                modes, bound = trial, trial_bound
    return modes


def bound_by_definition(graph, stage, table):
    steps = len(graph.ops) + 2
    layouts = [S._buffers(graph, stage, {}, table)[0]]
    if stage and S.overlap_delta(graph, stage) is not None:
        layouts.append(S._buffers(graph, stage, {}, table, overlap=True)[0])
    live = [min(step) for step in zip(*(live_bytes(b, steps) for b in layouts))]
    for i, saved in S.inplace_savings(graph, table):
        if not (stage and i in stage.ops):
            live[i + 1] -= saved
    return max(live)


@pytest.mark.parametrize("name", MODELS)
def test_stage_regions_and_macs_equal_walking_every_patch(name):
    graph = graph_of(name)
    for stage in some_stages(graph, every=3):
        outs, ins = walked_regions(graph, stage)
        assert (stage.out_regions, stage.in_regions) == (outs, ins), stage.label
        expected = 0
        for k, i in enumerate(stage.ops):
            out = graph.tensors[graph.ops[i].outputs[0]]
            per_pixel = S.op_macs(graph)[i] // (out.shape[1] * out.shape[2])
            expected += per_pixel * sum(patch[k].area for patch in outs)
        assert S.stage_executed_macs(graph, stage) == expected, stage.label


@pytest.mark.parametrize("name", MODELS)
def test_incremental_inplace_greedy_and_bound_equal_their_definitions(name):
    graph = graph_of(name)
    for profile in PROFILES:
        table = S.kernel_table(graph, profile)
        for stage in [None] + some_stages(graph):
            assert S.choose_inplace(graph, stage, table) == greedy_by_rebuilding(graph, stage, table)
            bound = S.optimistic_bound(graph, stage, table)
            assert bound == bound_by_definition(graph, stage, table)
            assert bound <= S.build_schedule(graph, stage, True, profile, table).plan.arena_bytes
