"""Every optimized kernel flavour, built with its target's cross compiler and run in QEMU, byte
for byte against the integer reference on the host kernel sweep: Cortex-M4 DSP (SMLAD, inline
assembly), Cortex-M55 Helium (MVE), Raspberry Pi 4 NEON, rv32imc blocked C; in place, out of
place and on patch tiles. The portable kernels run on Cortex-M4 too (-DTDK_PORTABLE_KERNELS)."""
import pytest

from tests.targets.kernel_models import (PORTABLE, expected_outputs, patched_schedule, random_feeds,
                                         run_c, schedules)
from tests.targets.test_kernels_host import chain_graph, sweep_graph

CASES = [(target, "") for target in ("cortex-m4", "cortex-m55", "rpi4", "rv32imc")] + [("cortex-m4", PORTABLE)]


@pytest.mark.parametrize("target,cflags", CASES, ids=[t + ("-portable" if c else "") for t, c in CASES])
def test_kernels_in_emulation_are_byte_exact(tmp_path, target, cflags):
    sweep, chain = sweep_graph(), chain_graph()
    runs = [(sweep, schedules(sweep, False)), (sweep, schedules(sweep, True)),
            (chain, patched_schedule(chain, 0, 3, 3))]
    for k, (graph, schedule) in enumerate(runs):
        feeds = random_feeds(graph, 2, seed=11)
        got = run_c(schedule, tmp_path / f"run{k}", target, feeds, cflags)
        for i, x in enumerate(feeds):
            assert got[i] == expected_outputs(graph, x), f"run {k}, input {i}"
