"""End to end on every shared int8 model: convert, build, run, byte-compare with the reference
executor and TensorFlow Lite Micro on 20 random inputs plus the real data that fits."""
import json

import numpy as np
import pytest

from benchmarks.shared_models import INT8_MODELS, TFLM_ARENA_BYTES, real_float_inputs, to_model_input
from toolchain import tflm
from toolchain.driver import pipeline
from toolchain.driver.options import ConvertOptions, PatchOptions, TargetOptions
from toolchain.driver.manifest import MODEL_FILE
from toolchain.driver.verify import verify
from toolchain.errors import UserError

CASES = [(name, "model") for name in INT8_MODELS] + [("mcunet_vww1_int8", "int8")]


@pytest.mark.parametrize("name,io", CASES)
def test_convert_verify_bit_exact(tmp_path, name, io):
    out = tmp_path / name
    report = pipeline.convert(INT8_MODELS[name], out, ConvertOptions(TargetOptions(io=io)))
    graph = pipeline.prepare_graph(out / MODEL_FILE, io)
    real = [to_model_input(graph, image).reshape(-1) for _, image in real_float_inputs(name)]
    inputs = np.stack(pipeline.random_inputs(graph, 20, seed=7) + real)
    np.save(tmp_path / "inputs.npy", inputs)
    report = verify(out, "host", tmp_path / "inputs.npy")
    v = report["verification"]
    assert v["inputs"] == 20 + len(real)
    assert v["bit_exact"], v["mismatched_inputs"]
    assert tflm.available(), "tflite-micro must be installed on x86-64 (make setup)"
    assert v["tflm_bit_exact"], v["tflm_mismatched_inputs"]
    mem = report["memory"]
    assert mem["arena_bytes"] >= mem["lower_bound_bytes"] > 0
    if name in TFLM_ARENA_BYTES:
        assert mem["arena_bytes"] <= TFLM_ARENA_BYTES[name]
    assert mem["peak_sram_bytes"] >= mem["arena_bytes"] + mem["stack_bytes"]
    saved = json.loads((out / "report.json").read_text())
    assert saved["verification"]["bit_exact"] is True
    assert "Bit-exact with the reference" in (out / "report.html").read_text()


def test_resnet8_says_cat_on_the_cat_photo(tmp_path):
    out = tmp_path / "r8"
    pipeline.convert(INT8_MODELS["resnet8_int8"], out)
    graph = pipeline.prepare_graph(out / MODEL_FILE, "model")
    (_, cat), = real_float_inputs("resnet8_int8")
    np.save(tmp_path / "cat.npy", to_model_input(graph, cat)[None])
    report = verify(out, "host", tmp_path / "cat.npy")
    assert report["predictions"] == [3]


def test_io_int8_writes_boundary_quantization_into_model_h(tmp_path):
    out = tmp_path / "m"
    pipeline.convert(INT8_MODELS["mcunet_vww1_int8"], out, ConvertOptions(TargetOptions(io="int8")))
    header = (out / "c" / "model.h").read_text()
    assert "typedef int8_t model_input_t;" in header
    assert "#define MODEL_INPUT_SCALE" in header and "#define MODEL_INPUT_ZERO_POINT (0)" in header
    float_out = tmp_path / "f"
    pipeline.convert(INT8_MODELS["mcunet_vww1_int8"], float_out)
    assert "typedef float model_input_t;" in (float_out / "c" / "model.h").read_text()


def test_convert_replaces_its_own_folder_whole_and_keeps_a_users_file(tmp_path):
    out = tmp_path / "hw"
    pipeline.convert(INT8_MODELS["hello_world_int8"], out)
    pipeline.convert(INT8_MODELS["hello_world_int8"], out, ConvertOptions(patch=PatchOptions("none")))   # our own: replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hw"]
    (out / "stale.txt").write_text("old")
    with pytest.raises(UserError, match="tinydeploy did not write|changed since"):
        pipeline.convert(INT8_MODELS["hello_world_int8"], out)
    pipeline.convert(INT8_MODELS["hello_world_int8"], out, ConvertOptions(force=True))
    assert not (out / "stale.txt").exists()
    assert (tmp_path / "hw.old-1" / "stale.txt").read_text() == "old"
