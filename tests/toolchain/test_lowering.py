"""Lowering is computed once and shared: per-channel multipliers with numpy, bit-identical to the
scalar QuantizeMultiplier; every op lowered at most once per convert; the lowering read-only."""
import dataclasses
import sys

import numpy as np
import pytest

from benchmarks.shared_models import INT8_MODELS
from toolchain import ops
from toolchain.driver import pipeline
from toolchain.driver.options import ConvertOptions, PatchOptions, TargetOptions
from toolchain.fixedpoint import quantize_multiplier, quantize_multipliers
from toolchain.lowering import f32, per_channel_multipliers
from toolchain.ops import op_def

EXAMPLE_INT8 = {"mnist_cnn_int8": "examples/mnist/mnist_cnn_int8.tflite"}


def scalar_per_channel(inp, w, out, channels):
    """PopulateConvolutionQuantizationParams as written before: one QuantizeMultiplier per channel."""
    scales = w.quant.scale.reshape(-1).astype(np.float32)
    if scales.size == 1:
        scales = np.repeat(scales, channels)
    pairs = [quantize_multiplier(float(f32(inp.scale())) * float(s) / float(f32(out.scale()))) for s in scales]
    return [p[0] for p in pairs], [p[1] for p in pairs]


EDGE_REALS = [0.0, 1.0, 0.5, 0.25, 2.0 ** -31, 2.0 ** -32, 2.0 ** -40, 1.0 - 2.0 ** -40, 0.5 - 2.0 ** -45,
              np.nextafter(1.0, 0.0), np.nextafter(0.5, 1.0), 3.0 ** -5, 7.0e-3, 123.456, 2.0 ** 20 - 1e-9,
              -0.3, -1.0 + 2.0 ** -42]


def test_vectorized_multiplier_equals_the_scalar_one_on_edges_and_random_reals():
    rng = np.random.default_rng(0)
    reals = np.concatenate([EDGE_REALS, 10.0 ** rng.uniform(-12, 3, 20_000), rng.uniform(0, 1, 20_000)])
    q, shift = quantize_multipliers(reals)
    expected = [quantize_multiplier(float(r)) for r in reals]
    assert q.tolist() == [e[0] for e in expected]
    assert shift.tolist() == [e[1] for e in expected]


def weighted_graphs(tmp_path):
    for name, path in {**INT8_MODELS, **EXAMPLE_INT8}.items():
        yield name, pipeline.prepare_graph(path, "model")
    from tests.opmodels import op_model
    for kind, shape in (("conv2d", (1, 9, 9, 3)), ("depthwise_conv2d", (1, 8, 8, 4)),
                        ("fully_connected", (1, 16))):
        for seed in range(3):
            path = tmp_path / f"{kind}_{seed}.tflite"
            path.write_bytes(op_model(kind, shape, seed=seed, per_channel=seed != 2))
            yield path.stem, pipeline.prepare_graph(path, "model")


def test_per_channel_multipliers_equal_the_scalar_path_on_every_shared_and_generated_model(tmp_path):
    checked = 0
    for name, graph in weighted_graphs(tmp_path):
        for op in graph.ops:
            if not ops.weighted(op) or graph.tensors[op.inputs[1]].quant is None:
                continue
            inp, w, out = (graph.tensors[n] for n in (op.inputs[0], op.inputs[1], op.outputs[0]))
            channels = w.shape[0] if op.kind != "depthwise_conv2d" else w.shape[3]
            mult, shift = per_channel_multipliers(inp, w, out, channels)
            assert (mult.tolist(), shift.tolist()) == scalar_per_channel(inp, w, out, channels), (name, op.name)
            checked += 1
    assert checked > 100


def count_lowerings(monkeypatch) -> dict:
    """Wrap every op definition's lower (in the registry and where its module calls it by name)
    to count calls per op (by output tensor)."""
    calls: dict = {}
    for kind, definition in list(ops.REGISTRY.items()):
        original = definition.lower

        def counting(graph, op, original=original):
            calls[op.outputs[0]] = calls.get(op.outputs[0], 0) + 1
            return original(graph, op)
        monkeypatch.setitem(ops.REGISTRY, kind, dataclasses.replace(definition, lower=counting))
        module = sys.modules[original.__module__]
        if getattr(module, "lower", None) is original:
            monkeypatch.setattr(module, "lower", counting)
    return calls


@pytest.mark.parametrize("name,target,patch", [("vww_96_int8", "cortex-m4", "auto"),
                                               ("vww_96_int8", "host", "none"),
                                               ("resnet8_int8", "cortex-m55", "auto")])
def test_each_op_is_lowered_at_most_once_per_convert(tmp_path, monkeypatch, name, target, patch):
    calls = count_lowerings(monkeypatch)
    pipeline.convert(INT8_MODELS[name], tmp_path / "out",
                     ConvertOptions(TargetOptions(name=target), PatchOptions(schedule=patch)))
    graph = pipeline.prepare_graph(INT8_MODELS[name], "model")
    assert calls, "the counter saw no lowering"
    assert max(calls.values()) == 1, {n: c for n, c in calls.items() if c > 1}
    assert len(calls) >= len(graph.ops) - 2   # every op but a float boundary is lowered


def test_a_lowering_is_shared_and_read_only():
    graph = pipeline.prepare_graph(INT8_MODELS["resnet8_int8"], "model")
    op = graph.ops[0]
    first = ops.lower(graph, op)
    assert ops.lower(graph, op) is first
    with pytest.raises(TypeError):
        first["multiplier"] = None
    other = dataclasses.replace(graph)   # another graph: its own lowering, equal values
    again = ops.lower(other, other.ops[0])
    assert again is not first and again["shift"].tolist() == first["shift"].tolist()
    assert op_def(op.kind).lower(graph, op)["multiplier"].tolist() == first["multiplier"].tolist()
