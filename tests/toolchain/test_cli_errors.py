"""Bad input: one line on stderr, exit code 2, no output folder left behind."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.shared_models import INT8_MODELS

CLI = [str(Path(sys.executable).with_name("tinydeploy"))]


def run_cli(*args, cwd=None):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, cwd=cwd)


def assert_one_line_failure(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def convert_fails(tmp_path, model, *fragments, target="host", args=()):
    out = tmp_path / "out"
    proc = run_cli("convert", model, "--target", target, "-o", out, *args)
    assert_one_line_failure(proc, *fragments)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_missing_file(tmp_path):
    convert_fails(tmp_path, tmp_path / "nope.tflite", "no such file")


def test_empty_file(tmp_path):
    (tmp_path / "empty.tflite").write_bytes(b"")
    convert_fails(tmp_path, tmp_path / "empty.tflite", "empty file")


def test_random_bytes(tmp_path):
    (tmp_path / "noise.tflite").write_bytes(np.random.default_rng(0).bytes(4096))
    convert_fails(tmp_path, tmp_path / "noise.tflite", "not a model")


def test_wrong_file_type(tmp_path):
    (tmp_path / "model.tflite").write_text("this is a text file, not a model\n")
    convert_fails(tmp_path, tmp_path / "model.tflite", "not a model")


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_file(tmp_path, keep):
    data = INT8_MODELS["resnet8_int8"].read_bytes()
    (tmp_path / "cut.tflite").write_bytes(data[: int(len(data) * keep)])
    convert_fails(tmp_path, tmp_path / "cut.tflite", "corrupt or truncated")


def test_corrupt_flatbuffer_header(tmp_path):
    data = bytearray(INT8_MODELS["hello_world_int8"].read_bytes())
    data[0:4] = b"\xff\xff\xff\x7f"  # root table offset far past the end
    (tmp_path / "bad.tflite").write_bytes(bytes(data))
    convert_fails(tmp_path, tmp_path / "bad.tflite", "corrupt or truncated")


def test_unsupported_op_is_named_with_its_position(tmp_path):
    import tensorflow as tf
    rng = np.random.default_rng(0)
    w = tf.constant(rng.normal(size=(4, 8)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def model(x):
        return tf.math.tanh(tf.matmul(x, w))

    conv = tf.lite.TFLiteConverter.from_concrete_functions([model.get_concrete_function()], model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.normal(size=(1, 4)).astype(np.float32)] for _ in range(10))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    (tmp_path / "tanh.tflite").write_bytes(conv.convert())
    convert_fails(tmp_path, tmp_path / "tanh.tflite", "unsupported op", "TANH at position 1")


def test_directory_instead_of_file(tmp_path):
    (tmp_path / "dir.tflite").mkdir()
    convert_fails(tmp_path, tmp_path / "dir.tflite", "is a directory")


def test_unknown_target(tmp_path):
    convert_fails(tmp_path, INT8_MODELS["hello_world_int8"], "unknown target 'z80'", target="z80")


def test_verify_without_convert(tmp_path):
    assert_one_line_failure(run_cli("verify", tmp_path), "not a tinydeploy output folder")


def test_verify_inputs_of_the_wrong_dtype_and_shape(tmp_path):
    out = tmp_path / "hw"
    assert run_cli("convert", INT8_MODELS["hello_world_int8"], "-o", out).returncode == 0
    np.save(tmp_path / "f.npy", np.zeros((3, 1), np.float32))
    assert_one_line_failure(run_cli("verify", out, "--inputs", tmp_path / "f.npy"), "dtype float32")
    np.save(tmp_path / "i.npy", np.zeros((0,), np.int8))
    assert_one_line_failure(run_cli("verify", out, "--inputs", tmp_path / "i.npy"), "does not hold whole inputs")


def test_missing_compiler(tmp_path):
    out = tmp_path / "hw"
    assert run_cli("convert", INT8_MODELS["hello_world_int8"], "-o", out).returncode == 0
    env = dict(os.environ, PATH=str(tmp_path / "empty-bin"))
    proc = subprocess.run(CLI + ["verify", str(out)], capture_output=True, text=True, env=env)
    assert_one_line_failure(proc, "not found", "install")
