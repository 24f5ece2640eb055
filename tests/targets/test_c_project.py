"""The emitted C is strict C99 without warnings and clean under ASan/UBSan."""
import numpy as np
import pytest

from benchmarks.shared_models import INT8_MODELS
from toolchain.driver import pipeline
from toolchain.driver.options import ConvertOptions, TargetOptions
from toolchain.driver.manifest import MODEL_FILE
from toolchain.driver.verify import verify

SANITIZE = "-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"


@pytest.mark.parametrize("name,io", [("resnet8_int8", "model"), ("mcunet_vww1_int8", "model"),
                                     ("vww_96_int8", "model"), ("hello_world_int8", "model")])
def test_sanitizers_clean_and_bit_exact(tmp_path, name, io):
    out = tmp_path / name
    pipeline.convert(INT8_MODELS[name], out, ConvertOptions(TargetOptions(io=io)))
    graph = pipeline.prepare_graph(out / MODEL_FILE, io)
    np.save(tmp_path / "x.npy", np.stack(pipeline.random_inputs(graph, 3, seed=1)))
    report = verify(out, "host", tmp_path / "x.npy", extra_cflags=SANITIZE)
    assert report["verification"]["bit_exact"]


def test_strict_c99_flags_are_in_the_generated_makefile(tmp_path):
    out = tmp_path / "hw"
    pipeline.convert(INT8_MODELS["hello_world_int8"], out)
    makefile = (out / "c" / "Makefile").read_text()
    assert "-std=c99 -Wall -Wextra -Werror" in makefile


def test_weights_and_test_vectors_are_const(tmp_path):
    out = tmp_path / "hw"
    pipeline.convert(INT8_MODELS["hello_world_int8"], out)
    weights = (out / "c" / "model_weights.c").read_text()
    assert weights.count("const int8_t") >= 3 and "\nint8_t" not in weights
    assert "const model_input_t harness_inputs" in (out / "c" / "harness" / "test_inputs.c").read_text()
