"""Keras (.h5, .keras, SavedModel) and float TFLite imports against TensorFlow on the shared data."""
import os

import numpy as np
import pytest

from benchmarks.shared_models import MODELS, real_float_inputs
from toolchain.errors import UserError
from toolchain.float_reference import run_float
from toolchain.importers import load_model
from toolchain.importers.keras import load_keras

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

TOLERANCE = 1e-4  # relative to the largest output magnitude (the acceptance bound)

# model file -> the shared data it is checked on (the int8 twin's real inputs)
KERAS = {"resnet8.h5": "resnet8_int8", "vww_96.h5": "vww_96_int8"}
FLOAT_TFLITE = {"mlperf_tiny/resnet8_float.tflite": "resnet8_int8", "mlperf_tiny/vww_96_float.tflite": "vww_96_int8",
                "tflm/hello_world_float.tflite": "hello_world_int8"}


def relative_error(ours, ref):
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("name", KERAS)
def test_h5_matches_keras(name):
    path = MODELS / "mlperf_tiny" / name
    graph = load_model(path)
    model = load_keras(path)
    for _, image in real_float_inputs(KERAS[name]):
        ref = model(image[None], training=False).numpy()
        assert relative_error(run_float(graph, [image[None]])[0], ref) <= TOLERANCE


@pytest.mark.parametrize("name", FLOAT_TFLITE)
def test_float_tflite_matches_tflite_interpreter(name):
    from ai_edge_litert.interpreter import Interpreter
    path = MODELS / name
    graph = load_model(path)
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    for _, image in real_float_inputs(FLOAT_TFLITE[name]):
        x = image.reshape(inp["shape"]).astype(np.float32)
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        assert relative_error(run_float(graph, [x])[0], interpreter.get_tensor(out["index"])) <= TOLERANCE


def _tiny_keras():
    tf.keras.utils.set_random_seed(0)
    layers = tf.keras.layers
    inp = tf.keras.Input((12, 12, 3))
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inp)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = layers.Flatten()(x)
    return tf.keras.Model(inp, layers.Dense(4, activation="softmax")(layers.Dense(6)(x)))


def test_keras_v3_file_and_saved_model_folder(tmp_path):
    model = _tiny_keras()
    model.save(tmp_path / "tiny.keras")
    model.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 12, 12, 3)).astype(np.float32)
    ref = model(x, training=False).numpy()
    for path in (tmp_path / "tiny.keras", tmp_path / "saved"):
        graph = load_model(path)
        kinds = [op.kind for op in graph.ops]
        assert kinds[:2] == ["conv2d", "depthwise_conv2d"]   # batch norm folded, ReLU6 fused by TF
        assert relative_error(run_float(graph, [x])[0], ref) <= TOLERANCE


def test_folder_that_is_not_a_saved_model(tmp_path):
    with pytest.raises(UserError, match="is a directory but not a TensorFlow SavedModel"):
        load_model(tmp_path)


def test_h5_that_is_not_a_keras_model(tmp_path):
    import h5py
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(UserError, match="Keras cannot load this model"):
        load_model(tmp_path / "data.h5")


def test_cli_keeps_tensorflows_logs_off_the_terminal(tmp_path):
    """TensorFlow runs in the reader's child process: a conversion prints nothing on stderr."""
    import subprocess
    import sys
    from pathlib import Path
    _tiny_keras().save(tmp_path / "tiny.keras")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).uniform(-1, 1, (4, 12, 12, 3)).astype(np.float32))
    cli = str(Path(sys.executable).with_name("tinydeploy"))
    proc = subprocess.run([cli, "convert", str(tmp_path / "tiny.keras"), "--calib", str(tmp_path / "calib.npy"),
                           "--patch", "none", "-o", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
