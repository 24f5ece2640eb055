"""Every optimized kernel flavour, built with its target's cross compiler and run in QEMU, byte
for byte against the integer reference on the host kernel sweep: Cortex-M4 DSP (SMLAD, inline
assembly), Cortex-M55 Helium (MVE), Raspberry Pi 4 NEON, rv32imc blocked C; in place, out of
place and on patch tiles. The portable kernels run on Cortex-M4 too (-DTDK_PORTABLE_KERNELS)."""
import pytest

from tests.targets.kernel_models import (PORTABLE, expected_outputs, patched_schedule, random_feeds,
                                         run_c, schedules)
from tests.targets.test_kernels_host import chain_graph, sweep_graph
from targets.kernel_spec import dsp_layouts

# (target, cflags, working buffers laid out for the DSP kernels, as `convert --target cortex-m4`
# does; without them a DSP build runs the kernels a project converted for another target has)
CASES = ([("cortex-m4", "", True), ("cortex-m4", "", False)]
         + [(target, "", False) for target in ("cortex-m55", "rpi4", "rv32imc")] + [("cortex-m4", PORTABLE, True)])
IDS = [t + ("-portable" if c else "") + ("" if dsp or t != "cortex-m4" else "-host-layouts") for t, c, dsp in CASES]


@pytest.mark.parametrize("target,cflags,dsp", CASES, ids=IDS)
def test_kernels_in_emulation_are_byte_exact(tmp_path, target, cflags, dsp):
    sweep, chain = sweep_graph(), chain_graph()
    for k, (graph, make) in enumerate([(sweep, lambda: schedules(sweep, False)), (sweep, lambda: schedules(sweep, True)),
                                       (chain, lambda: patched_schedule(chain, 0, 3, 3))]):
        feeds = random_feeds(graph, 2, seed=11)
        with dsp_layouts(dsp):
            got = run_c(make(), tmp_path / f"run{k}", target, feeds, cflags)
        for i, x in enumerate(feeds):
            assert got[i] == expected_outputs(graph, x), f"run {k}, input {i}"


def test_dsp_layouts_only_for_dsp_targets():
    """The four-channel depthwise plane is laid out for ARMv7E-M builds alone: a host project
    keeps the smaller working buffer (and its arena)."""
    from targets.kernel_spec import working_bytes
    from targets.registry import TARGETS
    assert {n for n, t in TARGETS.items() if t.dsp_kernels and not t.is_board} == {"cortex-m4", "cortex-m7"}
    graph = sweep_graph()
    small = [op for op in graph.ops if op.kind == "depthwise_conv2d" and graph.tensors[op.inputs[0]].shape == (1, 6, 6, 8)]
    plain = working_bytes(graph, small[0], "depthwise_conv2d")
    with dsp_layouts(True):
        dsp = working_bytes(graph, small[0], "depthwise_conv2d")
    assert dsp == (6 + 6) * (6 + 6) * 8 > plain   # the plane padded by 3 each side, 4 channels as int16


def test_a_patch_schedule_for_a_dsp_target_keeps_the_smaller_arena():
    """--patch auto on cortex-m4 leaves out the DSP working buffers that would raise the arena
    (vww: the four-channel plane in the patch stage); layer by layer keeps them."""
    from benchmarks.shared_models import INT8_MODELS
    from targets.registry import get_target
    from toolchain import pipeline
    graph = pipeline.prepare_graph(INT8_MODELS["vww_96_int8"], "model")
    m4, host = get_target("cortex-m4"), get_target("host")
    patched, dsp = pipeline.schedule_for(graph, m4, "auto")
    assert not dsp and patched.plan.arena_bytes == pipeline.schedule_for(graph, host, "auto")[0].plan.arena_bytes
    with dsp_layouts(True):
        raised = pipeline.make_schedule(graph, "auto")
    assert raised.plan.arena_bytes > patched.plan.arena_bytes
    assert pipeline.schedule_for(graph, m4, "none")[1]
