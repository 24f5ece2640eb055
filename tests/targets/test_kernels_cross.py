"""Every optimized kernel flavour, built with its target's cross compiler and run in QEMU, byte
for byte against the integer reference on the host kernel sweep: Cortex-M4 DSP (SMLAD, inline
assembly), Cortex-M55 Helium (MVE), Raspberry Pi 4 NEON, rv32imc blocked C; in place, out of
place and on patch tiles. The portable kernels run on Cortex-M4 too (-DTDK_PORTABLE_KERNELS)."""
import pytest

from tests.targets.kernel_models import (PORTABLE, expected_outputs, patched_schedule, random_feeds,
                                         run_c, schedules)
from tests.targets.test_kernels_host import chain_graph, sweep_graph
from toolchain.ops.choice import DSP, PORTABLE as PORTABLE_KERNELS, choose_kernel

# (target, cflags, working buffers laid out for the DSP kernels, as `convert --target cortex-m4`
# does; without them a DSP build runs the kernels a project converted for another target has)
CASES = ([("cortex-m4", "", True), ("cortex-m4", "", False)]
         + [(target, "", False) for target in ("cortex-m55", "rpi4", "rv32imc")] + [("cortex-m4", PORTABLE, True)])
IDS = [t + ("-portable" if c else "") + ("" if dsp or t != "cortex-m4" else "-host-layouts") for t, c, dsp in CASES]


@pytest.mark.parametrize("target,cflags,dsp", CASES, ids=IDS)
def test_kernels_in_emulation_are_byte_exact(tmp_path, target, cflags, dsp):
    sweep, chain = sweep_graph(), chain_graph()
    profile = DSP if dsp else PORTABLE_KERNELS
    for k, (graph, schedule) in enumerate([(sweep, schedules(sweep, False, profile)),
                                           (sweep, schedules(sweep, True, profile)),
                                           (chain, patched_schedule(chain, 0, 3, 3, profile))]):
        feeds = random_feeds(graph, 2, seed=11)
        got = run_c(schedule, tmp_path / f"run{k}", target, feeds, cflags)
        for i, x in enumerate(feeds):
            assert got[i] == expected_outputs(graph, x), f"run {k}, input {i}"


def test_dsp_layouts_only_for_dsp_targets():
    """The four-channel depthwise plane is laid out for ARMv7E-M builds alone: a host project
    keeps the smaller working buffer (and its arena)."""
    from targets.registry import TARGETS
    assert {n for n, t in TARGETS.items() if t.kernel_profile == DSP and not t.is_board} == {"cortex-m4", "cortex-m7"}
    graph = sweep_graph()
    small = [op for op in graph.ops if op.kind == "depthwise_conv2d" and graph.tensors[op.inputs[0]].shape == (1, 6, 6, 8)]
    plain = choose_kernel(graph, small[0], None, PORTABLE_KERNELS).work_bytes
    dsp = choose_kernel(graph, small[0], None, DSP).work_bytes
    assert dsp == (6 + 6) * (6 + 6) * 8 > plain   # the plane padded by 3 each side, 4 channels as int16


def test_a_patch_schedule_for_a_dsp_target_keeps_the_smaller_arena():
    """--patch auto on cortex-m4 leaves out the DSP working buffers that would raise the arena
    (vww: the four-channel plane in the patch stage); layer by layer keeps them."""
    from benchmarks.shared_models import INT8_MODELS
    from targets.registry import get_target
    from toolchain.driver import pipeline
    from toolchain.driver.options import PatchOptions
    graph = pipeline.prepare_graph(INT8_MODELS["vww_96_int8"], "model")
    m4, host = get_target("cortex-m4"), get_target("host")
    patched = pipeline.schedule_for(graph, m4, PatchOptions("auto"))
    assert patched.profile == PORTABLE_KERNELS
    assert patched.plan.arena_bytes == pipeline.schedule_for(graph, host, PatchOptions("auto")).plan.arena_bytes
    raised = pipeline.make_schedule(graph, PatchOptions("auto"), DSP)
    assert raised.plan.arena_bytes > patched.plan.arena_bytes
    assert pipeline.schedule_for(graph, m4, PatchOptions("none")).profile == DSP
