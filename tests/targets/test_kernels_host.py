"""Optimized kernels (host build: the blocked C flavour) and the portable kernels, byte for byte
against the integer reference, over a sweep of shapes: odd channel counts, strides 1 and 2,
'same', 'valid' and folded explicit padding, dilation, per-channel and per-tensor weights,
activations, in place and out of place, whole tensors and patch tiles."""
import pytest

from tests.targets.kernel_models import (PORTABLE, Builder, expected_outputs, patched_schedule,
                                         random_feeds, run_c, schedules)


def sweep_graph(seed: int = 0):
    """Independent single ops, each from its own input."""
    b = Builder(seed)
    for stride in (1, 2):
        for padding in ("same", "valid"):
            b.conv((1, 9, 8, 3), 5, 3, stride, padding, activation="relu6")                 # im2col, odd channels
            b.conv((1, 7, 9, 8), 16, 1, stride, padding)                                   # pointwise
            b.conv((1, 8, 7, 7), 7, 3, stride, padding, depthwise=True, activation="relu")  # depthwise 3x3
            b.conv((1, 11, 10, 6), 6, 5, stride, padding, depthwise=True)                  # depthwise 5x5
    b.conv((1, 6, 6, 4), 6, (3, 1), (2, 1), "same", activation="relu")     # rectangular kernel and stride
    b.conv((1, 9, 9, 3), 4, 3, 1, "same", dilation=2)                      # dilated
    b.conv((1, 9, 9, 4), 4, 3, 1, "same", dilation=2, depthwise=True)
    b.conv((1, 9, 8, 5), 5, 3, 1, "same", dilation=(2, 1), depthwise=True)    # rows kernel, dilated rows
    b.conv((1, 9, 10, 5), 5, 7, 1, "same", depthwise=True, activation="relu6")   # depthwise 7x7
    b.conv((1, 9, 10, 5), 5, 7, 2, "same", depthwise=True)
    b.conv((1, 8, 9, 6), 6, (5, 3), (2, 1), "same", depthwise=True)          # rectangular depthwise
    b.conv((1, 35, 34, 5), 5, (2, 6), (3, 1), "valid", depthwise=True)       # stride taller than the kernel
    b.conv((1, 30, 33, 3), 3, 1, 2, "same", depthwise=True)                 # 1x1 depthwise, stride 2
    # small planes, channels % 4 == 0: four channels at a time on DSP targets
    b.conv((1, 6, 6, 8), 8, 7, 1, "same", depthwise=True, activation="relu6")
    b.conv((1, 7, 8, 12), 12, 5, 2, "valid", depthwise=True)
    b.conv((1, 7, 9, 8), 8, 3, 1, "same", dilation=(1, 2), depthwise=True)
    b.conv((1, 3, 3, 16), 16, 7, 1, "same", depthwise=True)                # kernel wider than the plane
    b.conv((1, 9, 8, 20), 20, (3, 5), (1, 2), "same", depthwise=True, activation="relu")
    # stride 2, planes too big: four channels a few output rows at a time (DSP targets)
    b.conv((1, 25, 20, 8), 8, 3, 2, "same", depthwise=True, activation="relu6")   # padding rows both ends
    b.conv((1, 23, 30, 12), 12, 3, 2, "valid", depthwise=True)
    b.conv((1, 6, 7, 3), 4, 3, 2, fold=((1, 2), (0, 1)))                   # folded asymmetric padding
    b.conv((1, 6, 7, 4), 4, 3, 1, fold=((2, 0), (1, 1)), depthwise=True)
    b.conv((1, 5, 5, 4), 8, 3, 1, "same", depthwise=True)                  # depth multiplier 2
    b.conv((2, 4, 5, 6), 3, 3, 1, "same", per_channel=False)               # batch 2, per-tensor
    b.conv((1, 5, 6, 2), 3, 1, 1, "same", gain=1 / 4096)                   # multiplier > 1: left shift
    b.conv((1, 4, 4, 19), 13, 1, 1, "same", activation="relu")             # k % 4 == 3, odd filters
    b.conv((1, 10, 9, 8), 12, 1, 1, "same", activation="relu6")            # pointwise, in place: grows
    b.conv((1, 10, 9, 12), 5, 1, 1, "same")                                # pointwise, in place: shrinks
    b.conv((1, 9, 9, 6), 6, 3, 2, "same", depthwise=True)                  # depthwise stride 2 in place
    b.conv((1, 40, 37, 3), 3, 3, 1, "same", depthwise=True, activation="relu6")   # ring of rows
    b.conv((1, 30, 70, 4), 4, 3, 1, "same", depthwise=True)                # ring, whole int8 range
    b.conv((1, 30, 71, 4), 4, 3, 2, "same", depthwise=True)
    b.fully_connected(1, 37, 5, activation="relu")
    b.fully_connected(3, 64, 10, per_channel=True)
    return b.graph()


def chain_graph(seed: int = 1):
    """conv 3x3 s2 -> depthwise -> pointwise -> depthwise s2: a patch stage's chain."""
    b = Builder(seed)
    y = b.conv((1, 23, 21, 3), 8, 3, 2, "same", activation="relu6", output=False)
    y = b.conv((1, 12, 11, 8), 8, 3, 1, "same", depthwise=True, activation="relu6", x=y, output=False)
    y = b.conv((1, 12, 11, 8), 12, 1, 1, "same", activation="relu6", x=y, output=False)
    b.conv((1, 12, 11, 12), 12, 3, 2, "same", depthwise=True, x=y)
    return b.graph()


def check(graph, schedule, out_dir, cflags):
    feeds = random_feeds(graph, 2, seed=7)
    got = run_c(schedule, out_dir, "host", feeds, cflags)
    for i, x in enumerate(feeds):
        assert got[i] == expected_outputs(graph, x), f"input {i}"


@pytest.mark.parametrize("cflags", ["", PORTABLE], ids=["optimized", "portable"])
@pytest.mark.parametrize("inplace", [False, True], ids=["out_of_place", "in_place"])
def test_kernel_sweep_is_byte_exact(tmp_path, cflags, inplace):
    graph = sweep_graph()
    check(graph, schedules(graph, inplace), tmp_path, cflags)


@pytest.mark.parametrize("cflags", ["", PORTABLE], ids=["optimized", "portable"])
@pytest.mark.parametrize("grid", [2, 3])
def test_kernels_on_patch_tiles_are_byte_exact(tmp_path, cflags, grid):
    graph = chain_graph()
    check(graph, patched_schedule(graph, 0, 3, grid), tmp_path, cflags)
