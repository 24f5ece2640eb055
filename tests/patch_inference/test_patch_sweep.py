"""Patch-based schedules are exact: sweep split points and grids on the shared models; every
emitted program is byte-exact with the layer-by-layer reference (host build)."""
import numpy as np
import pytest

from benchmarks.shared_models import INT8_MODELS
from patch_inference.schedule import candidate_stages
from toolchain.driver import pipeline
from toolchain.driver.options import ConvertOptions, PatchOptions, TargetOptions
from toolchain.driver.manifest import MODEL_FILE
from toolchain.driver.verify import verify
from toolchain.importers import load_model
from toolchain.passes import strip_float_io

from benchmarks.patch_sweep import check, searched_configs


def sweep(name, io, grids=(2, 3, 4, 8)):
    graph = load_model(INT8_MODELS[name])
    graph = pipeline.optimize(strip_float_io(graph) if io == "int8" else graph)
    first = min(f for f, _, _ in candidate_stages(graph))
    configs = sorted({(last, grid) for f, last, grid in candidate_stages(graph) if f == first and grid in grids})
    return [(name, io, f"{grid}x{grid}@{last}") for last, grid in configs]


CASES = sweep("mcunet_vww1_int8", "int8") + sweep("resnet8_int8", "model") + sweep("vww_96_int8", "model", (2, 4))


@pytest.mark.parametrize("name,io,patch", CASES)
def test_patched_schedule_is_byte_exact(tmp_path, name, io, patch):
    out = tmp_path / "m"
    report = pipeline.convert(INT8_MODELS[name], out, ConvertOptions(TargetOptions(io=io), PatchOptions(patch)))
    assert report["plan"]["patch"] == patch
    graph = pipeline.prepare_graph(out / MODEL_FILE, io)
    np.save(tmp_path / "x.npy", np.stack(pipeline.random_inputs(graph, 2, seed=3)))
    v = verify(out, "host", tmp_path / "x.npy")["verification"]
    assert v["bit_exact"] and v["tflm_bit_exact"] is not False


@pytest.mark.parametrize("name,io", [("vww_96_int8", "model"), ("mcunet_vww1_int8", "int8")])
def test_streamed_input_is_byte_exact_and_smaller(tmp_path, name, io):
    whole = pipeline.convert(INT8_MODELS[name], tmp_path / "whole", ConvertOptions(TargetOptions(io=io)))
    out = tmp_path / "streamed"
    report = pipeline.convert(INT8_MODELS[name], out, ConvertOptions(TargetOptions(io=io), PatchOptions(stream_input=True)))
    assert report["memory"]["input_in_sram"] is False
    assert report["memory"]["arena_bytes"] <= whole["memory"]["arena_bytes"]
    assert "model_invoke_streamed" in (out / "c" / "model.h").read_text()
    v = verify(out, "host")["verification"]
    assert v["bit_exact"] and v["tflm_bit_exact"]


def test_search_respects_the_mac_budget_and_beats_layer_by_layer(tmp_path):
    for budget in (0.0, 0.05, 0.10):
        report = pipeline.convert(INT8_MODELS["resnet8_int8"], tmp_path / f"r{budget}", ConvertOptions(patch=PatchOptions(max_mac_overhead=budget)))
        assert report["compute"]["mac_overhead"] <= budget + 1e-9
        assert report["memory"]["arena_bytes"] <= report["memory"]["layer_by_layer_arena_bytes"]
    assert report["memory"]["arena_bytes"] < report["memory"]["layer_by_layer_arena_bytes"]


def test_bad_patch_option_is_one_line(tmp_path):
    from toolchain.errors import UserError
    for option in ("3x2@1", "4x4@99", "banana"):
        with pytest.raises(UserError):
            pipeline.convert(INT8_MODELS["resnet8_int8"], tmp_path / "x", ConvertOptions(patch=PatchOptions(option)))
    assert not (tmp_path / "x").exists()


def test_every_stage_label_gives_back_its_stage():
    from patch_inference.schedule import make_stage, parse_patch_option
    graph = pipeline.optimize(load_model(INT8_MODELS["resnet8_int8"]))
    for first, last, grid in candidate_stages(graph):
        stage = parse_patch_option(graph, make_stage(graph, first, last, grid).label)
        assert (stage.first, stage.last, stage.grid) == (first, last, grid)


QEMU_CASES = [("resnet8_int8", patch) for patch in searched_configs("resnet8_int8", "model")[::7]]


@pytest.mark.parametrize("name,patch", QEMU_CASES)
def test_searched_stages_are_byte_exact_on_cortex_m4(tmp_path, name, patch):
    """A sample of the stages the search considers (all of them: benchmarks/patch_sweep.py), in QEMU."""
    assert check(name, "model", patch, "cortex-m4", tmp_path)
