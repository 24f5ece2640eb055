"""Sub-8-bit weights in C: every weighted kernel (conv, pointwise, depthwise, fully connected;
in place, out of place, on patch tiles) with 4-bit and 2-bit packed weights, byte for byte
against the integer reference, on the host and (cross) in QEMU on Cortex-M4 and rv32imc; and
4-bit activations (int8 held, clamped to [-8, 7] by their producer)."""
from dataclasses import replace

import numpy as np
import pytest

from targets.registry import get_target
from tests.targets.kernel_models import (PORTABLE, expected_outputs, patched_schedule, random_feeds, run_c,
                                         schedules)
from tests.targets.test_kernels_host import chain_graph, sweep_graph
from toolchain.ir import Graph
from toolchain.ops import weighted
from toolchain.ops.kernel_spec import dsp_gemm_weights
from toolchain.packing import unpacked_bytes, weight_range


def with_weight_bits(graph: Graph, bits_of) -> Graph:
    """The graph with each weighted op's weights redrawn in the range of `bits_of(op index)`
    bits (scales grown to keep the outputs spread over the int8 range)."""
    tensors = dict(graph.tensors)
    rng = np.random.default_rng(5)
    for i, op in enumerate(graph.ops):
        if not weighted(op) or bits_of(i) == 8:
            continue
        t = tensors[op.inputs[1]]
        bits = bits_of(i)
        lo, hi = weight_range(bits)
        data = rng.integers(lo, hi + 1, size=t.shape).astype(np.int8)
        quant = replace(t.quant, scale=(t.quant.scale * 127 / max(hi, 1)).astype(np.float32), bits=bits)
        tensors[op.inputs[1]] = replace(t, data=data, quant=quant)
    return Graph(tensors, graph.ops, graph.inputs, graph.outputs)


def with_four_bit_outputs(graph: Graph) -> Graph:
    """Every op's output a 4-bit feature map (zero point moved into [-8, 7], scale x 16)."""
    tensors = dict(graph.tensors)
    for op in graph.ops:
        t = tensors[op.outputs[0]]
        zp = np.clip(t.quant.zero_point // 16, -8, 7)
        tensors[t.name] = replace(t, quant=replace(t.quant, scale=(t.quant.scale * 16).astype(np.float32),
                                                   zero_point=zp, bits=4))
    return Graph(tensors, graph.ops, graph.inputs, graph.outputs)


def runs(bits_of, profile, four_bit_outputs=False):
    sweep, chain = with_weight_bits(sweep_graph(), bits_of), with_weight_bits(chain_graph(), bits_of)
    if four_bit_outputs:
        sweep, chain = with_four_bit_outputs(sweep), with_four_bit_outputs(chain)
    return [(sweep, schedules(sweep, False, profile)), (sweep, schedules(sweep, True, profile)),
            (chain, patched_schedule(chain, 0, 3, 3, profile))]


def check(tmp_path, target, bits_of, cflags="", four_bit_outputs=False):
    # the working buffers `convert --target TARGET` lays out
    for k, (graph, schedule) in enumerate(runs(bits_of, get_target(target).kernel_profile, four_bit_outputs)):
        feeds = random_feeds(graph, 2, seed=13)
        got = run_c(schedule, tmp_path / f"run{k}", target, feeds, cflags)
        for i, x in enumerate(feeds):
            expected = expected_outputs(graph, x)
            assert got[i] == expected, f"run {k}, input {i}"
            if four_bit_outputs:
                values = np.frombuffer(expected, np.int8)
                assert values.min() >= -8 and values.max() <= 7 and len(set(values.tolist())) > 2


@pytest.mark.parametrize("cflags", ["", PORTABLE], ids=["optimized", "portable"])
@pytest.mark.parametrize("bits", [4, 2])
def test_packed_kernels_on_host_are_byte_exact(tmp_path, bits, cflags):
    check(tmp_path, "host", lambda i: bits, cflags)
    model_c = (tmp_path / "run0" / "c" / "model.c").read_text()
    assert model_c.count("tdk_unpack_weights(") == sum(weighted(op) for op in sweep_graph().ops)


def test_packed_weights_are_in_flash_packed(tmp_path):
    from targets.c_emitter import emit_c_project
    graph = with_weight_bits(sweep_graph(), lambda i: 4)
    int8 = emit_c_project(schedules(sweep_graph(), False), tmp_path / "int8", [])
    packed = emit_c_project(schedules(graph, False), tmp_path / "packed", [])
    weights = sum(graph.tensors[op.inputs[1]].size for op in graph.ops if weighted(op))
    assert 0 < int8.weights_bytes - packed.weights_bytes <= weights // 2 + len(graph.ops)
    scratch = {b.name: b for b in schedules(graph, False).buffers if b.name.startswith("unpack")}
    assert len(scratch) == sum(weighted(op) for op in graph.ops)
    for i, op in enumerate(graph.ops):   # the op's own step only; at least its int8 weights
        assert scratch[f"unpack{i}"].first == scratch[f"unpack{i}"].last == i + 1
        assert scratch[f"unpack{i}"].size >= graph.tensors[op.inputs[1]].size


CROSS = [("cortex-m4", ""), ("cortex-m4", PORTABLE), ("rv32imc", "")]


@pytest.mark.parametrize("target,cflags", CROSS, ids=["cortex-m4", "cortex-m4-portable", "rv32imc"])
def test_mixed_kernels_in_emulation_are_byte_exact(tmp_path, target, cflags):
    check(tmp_path, target, lambda i: (4, 2, 8)[i % 3], cflags)


@pytest.mark.parametrize("target", ["host", "cortex-m4", "rv32imc"])
def test_four_bit_activations_are_byte_exact(tmp_path, target):
    check(tmp_path, target, lambda i: (8, 4)[i % 2], four_bit_outputs=True)


def test_scratch_holds_the_dsp_gemm_filters():
    graph = with_weight_bits(sweep_graph(), lambda i: 2)
    for op in graph.ops:
        w = graph.tensors[op.inputs[1]]
        taps = w.data.reshape(w.shape[0], -1)
        need = w.size if op.kind == "depthwise_conv2d" else max(w.size, 2 * dsp_gemm_weights(taps).size)
        assert unpacked_bytes(graph, op) == need
