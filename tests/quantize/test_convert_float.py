"""`tinydeploy convert` on float models: --calib through PTQ to a C project that verify finds
byte-exact with the reference and TFLite Micro; the Pi/phone bundle and its LiteRT runner; bad
input ends in one line and exit code 2."""
import dataclasses
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmarks.shared_models import INT8_MODELS, MODELS, REPO
from targets import registry
from toolchain.driver import pipeline
from toolchain.driver.options import ConvertOptions, TargetOptions
from toolchain.driver.manifest import MODEL_FILE
from toolchain.driver.verify import verify
from toolchain.reference import run_reference

sys.path.insert(0, str(REPO / "tests" / "toolchain"))
from test_cli_errors import assert_one_line_failure, run_cli  # noqa: E402
from test_importers_onnx import Small, Zoo, export  # noqa: E402

EXAMPLE = REPO / "examples" / "mnist_torch"
CALIB = EXAMPLE / "calib.npz"


@pytest.mark.parametrize("io", ["model", "int8"])
def test_onnx_to_verified_c(tmp_path, io):
    out = tmp_path / "m"
    pipeline.convert(EXAMPLE / "mnist_mbv2.onnx", out, ConvertOptions(TargetOptions(io=io), calib=CALIB))
    assert sorted(p.name for p in (out / "tflite").iterdir()) == [
        "model_float16.tflite", "model_float32.tflite", "model_int8.tflite"]
    header = (out / "c" / "model.h").read_text()
    assert f"typedef {'float' if io == 'model' else 'int8_t'} model_input_t;" in header
    settings = json.loads((out / "convert.json").read_text())
    assert settings["calib_method"] == "mse" and settings["calib"] == str(CALIB)
    v = verify(out, "host")["verification"]
    assert v["bit_exact"] and v["tflm_bit_exact"], v


def test_op_zoo_in_int8_c_is_byte_exact_with_tflite_micro(tmp_path):
    """Transposes, explicit pads, concatenation, broadcast constants, pools and mean, quantized."""
    torch.manual_seed(0)
    model = export(Zoo(), (1, 3, 16, 16), tmp_path / "zoo.onnx")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).uniform(0, 1, (16, 3, 16, 16)).astype(np.float32))
    pipeline.convert(model, tmp_path / "zoo", ConvertOptions(calib=tmp_path / "calib.npy"))
    v = verify(tmp_path / "zoo", "host")["verification"]
    assert v["bit_exact"] and v["tflm_bit_exact"], v


def test_cli_calibrates_a_float_tflite_with_each_method(tmp_path):
    x = np.linspace(0, 2 * np.pi, 50, dtype=np.float32).reshape(50, 1)
    np.savez(tmp_path / "calib.npz", x=x)
    for method in ("minmax", "percentile", "entropy"):
        out = tmp_path / method
        proc = run_cli("convert", MODELS / "tflm" / "hello_world_float.tflite", "--calib", tmp_path / "calib.npz",
                       "--calib-method", method, "-o", out)
        assert proc.returncode == 0, proc.stderr
        assert json.loads((out / "convert.json").read_text())["calib_method"] == method


def fake_board(monkeypatch, name="rpi4"):
    """A Pi target with the host's compiler, when the registry does not carry it yet."""
    board = dataclasses.replace(registry.TARGETS["host"], name=name, isa="aarch64 (Cortex-A72)",
                                description="Raspberry Pi 4")
    monkeypatch.setitem(registry.TARGETS, name, registry.TARGETS.get(name, board))


def test_pi_bundle_runs_with_litert(tmp_path, monkeypatch):
    fake_board(monkeypatch)
    out = tmp_path / "pi"
    pipeline.convert(EXAMPLE / "mnist_mbv2.pt2", out, ConvertOptions(TargetOptions("rpi4"), calib=CALIB))
    bundle = out / "bundle"
    assert {p.name for p in bundle.iterdir()} == {"model_float32.tflite", "model_float16.tflite", "model_int8.tflite",
                                                  "run.py", "README.md", "c"}
    assert (bundle / "c" / "model.h").exists() and "rpi4" in (bundle / "README.md").read_text()
    graph = pipeline.prepare_graph(out / MODEL_FILE, "model")
    xs = np.random.default_rng(3).uniform(0, 1, (2, 1, 1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", xs)
    proc = subprocess.run([sys.executable, bundle / "run.py", "--input", tmp_path / "x.npy", "--reference",
                           "--runs", "3", "--warmup", "1"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for i, x in enumerate(xs):
        expected = run_reference(graph, [x])[0].reshape(-1)
        line = next(l for l in proc.stdout.splitlines() if l.startswith(f"OUT {i} "))
        assert int(re.search(r"argmax (\d+)", line).group(1)) == int(expected.argmax())
    assert re.search(r"LATENCY model_int8.tflite reference threads=4 runs=3: mean [\d.]+ ms", proc.stdout)
    for flags in (["--threads", "2"], ["--no-xnnpack", "--model", "model_float16.tflite"]):
        proc = subprocess.run([sys.executable, bundle / "run.py", "--runs", "5", *flags], capture_output=True, text=True)
        assert proc.returncode == 0 and "LATENCY" in proc.stdout, proc.stderr


def test_phone_bundle_of_an_int8_model(tmp_path, monkeypatch):
    fake_board(monkeypatch, "android-arm64")
    pipeline.convert(INT8_MODELS["resnet8_int8"], tmp_path / "phone", ConvertOptions(TargetOptions("android-arm64")))
    bundle = tmp_path / "phone" / "bundle"
    assert sorted(p.name for p in bundle.iterdir()) == ["README.md", "c", "model_int8.tflite", "run.py"]
    readme = (bundle / "README.md").read_text()
    assert "android-arm64" in readme and "Termux" in readme and "aarch64-linux-android21-clang" in readme
    assert "`int8` of shape `(1, 32, 32, 3)` (int8 with scale" in readme


def test_int8_models_keep_their_file_and_refuse_calibration(tmp_path):
    out = tmp_path / "hw"
    pipeline.convert(INT8_MODELS["hello_world_int8"], out)
    assert (out / MODEL_FILE).read_bytes() == INT8_MODELS["hello_world_int8"].read_bytes()
    assert [p.name for p in (out / "tflite").iterdir()] == ["model_int8.tflite"]
    np.save(tmp_path / "c.npy", np.zeros((2, 1), np.float32))
    convert_fails(tmp_path, INT8_MODELS["hello_world_int8"], "already quantized; --calib is for float models",
                  "--calib", tmp_path / "c.npy")


# ------------------------------------------------------------- bad input: one line, exit 2

def convert_fails(tmp_path, model, fragment, *args):
    out = tmp_path / "out"
    assert_one_line_failure(run_cli("convert", model, "-o", out, *args), fragment)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_float_model_without_calibration_data(tmp_path):
    convert_fails(tmp_path, EXAMPLE / "mnist_mbv2.onnx", "a float model needs calibration data for int8: pass --calib")


@pytest.mark.parametrize("data,fragment", [
    (np.zeros((4, 1, 28, 28), np.uint8), "calibration data is uint8, expected float32"),
    (np.zeros((4, 28, 28, 1), np.float32), "expected [N, 1, 28, 28] in the model's own layout"),
])
def test_calibration_data_of_the_wrong_dtype_or_shape(tmp_path, data, fragment):
    np.save(tmp_path / "calib.npy", data)
    convert_fails(tmp_path, EXAMPLE / "mnist_mbv2.onnx", fragment, "--calib", tmp_path / "calib.npy")


def test_dynamic_batch_onnx(tmp_path):
    model = export(Small(), (1, 3, 8, 8), tmp_path / "dyn.onnx", dynamic_axes={"x": {0: "batch"}})
    convert_fails(tmp_path, model, "has a dynamic dimension 'batch' at axis 0", "--calib", CALIB)


def test_unsupported_onnx_op(tmp_path):
    model = export(Small(torch.nn.Sigmoid()), (1, 3, 8, 8), tmp_path / "sig.onnx")
    convert_fails(tmp_path, model, "unsupported ONNX op: Sigmoid", "--calib", CALIB)


def test_wrong_file_type(tmp_path):
    (tmp_path / "notes.pt").write_text("not a model\n")
    convert_fails(tmp_path, tmp_path / "notes.pt", "not a model tinydeploy can read")


def test_bad_input_shape_option(tmp_path):
    proc = run_cli("convert", EXAMPLE / "mnist_mbv2.pt", "--input-shape", "1,x,28", "-o", tmp_path / "o")
    assert proc.returncode == 2 and "is not a shape like 1,3,32,32" in proc.stderr
    convert_fails(tmp_path, EXAMPLE / "mnist_mbv2.pt", "the file records input shape [1, 1, 28, 28]",
                  "--input-shape", "1,1,32,32", "--calib", CALIB)
