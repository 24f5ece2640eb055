"""A fast kernel's working buffer is part of the memory plan: where it sets the arena, the op
takes the portable kernel (no buffer), so the arena stays below TFLite Micro's; where it costs
little, the fast kernel stays."""
import numpy as np

from benchmarks.shared_models import INT8_MODELS
from targets.registry import get_target
from tests.opmodels import audio_depthwise_model
from toolchain import tflm
from toolchain.driver import pipeline
from toolchain.driver.options import ConvertOptions, PatchOptions, TargetOptions
from toolchain.driver.verify import verify


def test_a_buffer_that_sets_the_arena_goes_and_the_arena_stays_below_tflm(tmp_path):
    model = tmp_path / "audio_dw_int8.tflite"
    model.write_bytes(audio_depthwise_model())
    graph = pipeline.prepare_graph(model, "model")
    schedule, record = pipeline.choose_schedule(graph, get_target("cortex-m4"), PatchOptions())
    fast = pipeline.make_schedule(graph, PatchOptions("none"), get_target("cortex-m4").kernel_profile)
    assert record["optimize"] == "memory"
    assert schedule.plan.arena_bytes == schedule.plan.lower_bound_bytes < fast.plan.arena_bytes
    assert any(k.spec is None and fast.kernels[i].spec is not None for i, k in schedule.kernels.items())
    feeds = [pipeline.split_feeds(graph, x) for x in pipeline.random_inputs(graph, 2, seed=1)]
    tflm_arena = tflm.smallest_arena(model.read_bytes(), feeds[0], len(graph.outputs))
    assert schedule.plan.arena_bytes <= tflm_arena
    report = pipeline.convert(model, tmp_path / "out", ConvertOptions(TargetOptions("host")))
    assert report["memory"]["arena_bytes"] == schedule.plan.arena_bytes
    v = verify(tmp_path / "out", "host")["verification"]
    assert v["bit_exact"] and v["tflm_bit_exact"]


def test_a_buffer_that_costs_little_keeps_the_fast_kernels():
    graph = pipeline.prepare_graph(INT8_MODELS["vww_96_int8"], "model")
    schedule, _ = pipeline.choose_schedule(graph, get_target("cortex-m4"), PatchOptions())
    searched = pipeline.make_schedule(graph, PatchOptions(), schedule.profile)
    assert schedule.plan.arena_bytes == searched.plan.arena_bytes
    assert all((k.spec is None) == (searched.kernels[i].spec is None) for i, k in schedule.kernels.items())
    assert np.isclose(schedule.executed_macs, searched.executed_macs)
