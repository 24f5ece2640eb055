"""Post-training quantization: TFLite's int8 conventions, range methods, calibration data checks,
and the quantized example within a point of its float accuracy on the integer reference."""
import sys

import numpy as np
import pytest
import torch

from benchmarks.shared_models import MODELS, REPO
from quantize import load_calibration, post_training_quantize
from quantize.calibrate import TensorStats
from quantize.ranges import METHODS, MIN_SCALE, affine_params, choose_range
from toolchain.errors import UserError
from toolchain.float_reference import run_float
from toolchain.importers import load_model
from toolchain.reference import run_reference

EXAMPLE = REPO / "examples" / "mnist_torch"
sys.path.insert(0, str(EXAMPLE))
from data import load_split  # noqa: E402


@pytest.fixture(scope="module")
def mnist():
    graph = load_model(EXAMPLE / "mnist_mbv2.onnx")
    calib = np.load(EXAMPLE / "calib.npz")["x"][:64]
    return graph, post_training_quantize(graph, calib, "mse")


def test_weights_bias_and_activations_follow_tflite_int8(mnist):
    graph, q = mnist
    assert q.ops[0].kind == "quantize" and q.ops[-1].kind == "dequantize"
    assert q.tensors[q.inputs[0]].dtype == "float32" and q.tensors[q.outputs[0]].dtype == "float32"
    axes = {"conv2d": 0, "depthwise_conv2d": 3, "fully_connected": None}
    for op in q.ops:
        if op.kind not in axes:
            continue
        x, w, b = (q.tensors[n] for n in op.inputs)
        assert w.dtype == "int8" and w.quant.axis == axes[op.kind]
        assert np.all(w.quant.zero_point == 0) and np.abs(w.data.astype(int)).max() == 127
        assert w.quant.scale.size == (1 if axes[op.kind] is None else w.shape[axes[op.kind]])
        assert b.dtype == "int32" and np.all(b.quant.zero_point == 0)
        np.testing.assert_allclose(b.quant.scale, np.float32(x.scale()) * w.quant.scale, rtol=1e-6)
        assert x.dtype == q.tensors[op.outputs[0]].dtype == "int8"


def test_value_moving_ops_keep_their_input_quantization_and_softmax_is_fixed():
    graph = load_model(MODELS / "mlperf_tiny" / "resnet8_float.tflite")
    calib = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    q = post_training_quantize(graph, calib, "minmax")
    kinds = {op.kind for op in q.ops}
    assert {"avg_pool2d", "softmax"} <= kinds
    for op in q.ops:
        out = q.tensors[op.outputs[0]]
        if op.kind in ("avg_pool2d", "max_pool2d", "reshape", "pad", "transpose"):
            src = q.tensors[op.inputs[0]]
            assert (out.scale(), out.zero_point()) == (src.scale(), src.zero_point())
        if op.kind == "softmax":
            assert out.scale() == np.float32(1 / 256) and out.zero_point() == -128


def test_concat_inputs_share_the_output_grid(tmp_path):
    sys.path.insert(0, str(REPO / "tests" / "toolchain"))
    from test_importers_onnx import Zoo, export
    torch.manual_seed(0)
    graph = load_model(export(Zoo(), (1, 3, 16, 16), tmp_path / "zoo.onnx"))
    calib = np.random.default_rng(0).uniform(0, 1, (8, 3, 16, 16)).astype(np.float32)
    q = post_training_quantize(graph, calib, "percentile")
    concats = [op for op in q.ops if op.kind == "concat"]
    assert concats
    for op in concats:
        out = q.tensors[op.outputs[0]]
        for name in op.inputs:
            assert (q.tensors[name].scale(), q.tensors[name].zero_point()) == (out.scale(), out.zero_point())
    x = calib[:1]
    assert np.argmax(run_reference(q, [x])[0]) == np.argmax(run_float(graph, [x])[0])


@pytest.mark.parametrize("method", METHODS)
def test_example_int8_accuracy_within_a_point_of_float(mnist, method):
    graph, _ = mnist
    q = post_training_quantize(graph, np.load(EXAMPLE / "calib.npz")["x"][:64], method)
    _, _, x_test, y_test = load_split()
    x_test, y_test = x_test[:200], y_test[:200]
    float_pred = np.array([run_float(graph, [x[None]])[0].argmax() for x in x_test])
    int8_pred = np.array([run_reference(q, [x[None]])[0].argmax() for x in x_test])
    assert abs((int8_pred == y_test).mean() - (float_pred == y_test).mean()) <= 0.01
    assert (int8_pred == float_pred).mean() >= 0.98


def _stats(values):
    values = np.asarray(values, np.float64)
    s = TensorStats(float(values.min()), float(values.max()))
    s.histogram = np.histogram(values[values != 0], bins=2048, range=(s.low, s.high))[0]
    return s


def test_percentile_and_entropy_clip_isolated_outliers_that_minmax_keeps():
    rng = np.random.default_rng(0)
    s = _stats(np.concatenate([rng.normal(0, 1, 100_000), [40.0, -35.0]]))
    assert choose_range(s, "minmax") == (s.low, s.high)
    for method in ("percentile", "entropy"):
        low, high = choose_range(s, method)
        assert s.low < low < 0 < high < 20, method


def test_mse_clips_a_heavy_tail_where_that_lowers_the_error():
    s = _stats(np.random.default_rng(0).laplace(0, 1, 100_000))
    low, high = choose_range(s, "mse")
    assert s.low < low < 0 < high < s.high
    centers = (s.edges()[:-1] + s.edges()[1:]) / 2

    def error(lo, hi):
        scale, zp = affine_params(lo, hi)
        q = np.clip(np.round(centers / scale) + zp, -128, 127)
        return float((((q - zp) * scale - centers) ** 2 * s.histogram).sum())
    assert error(low, high) < error(s.low, s.high)


def test_zeros_do_not_pull_ranges_in():
    """ReLU outputs: half exact zeros. int8 holds 0 exactly, so they must not shrink the range."""
    rng = np.random.default_rng(1)
    values = np.maximum(rng.uniform(-6, 6, 100_000), 0)
    for method in METHODS:
        assert choose_range(_stats(values), method)[1] > 5.0, method


def test_affine_params_hold_zero_and_cover_the_range():
    scale, zp = affine_params(0.0, 6.0)
    assert zp == -128 and scale == np.float32(6.0 / 255)
    scale, zp = affine_params(0.5, 2.0)  # widened to [0, 2]
    assert zp == -128
    scale, zp = affine_params(-1.0, 3.0)
    assert -128 <= zp <= 127 and abs((127 - zp) * scale - 3.0) < scale


@pytest.fixture
def hello():
    return load_model(MODELS / "tflm" / "hello_world_float.tflite")


def test_calibration_accepts_npy_npz_and_one_sample(tmp_path, hello):
    x = np.linspace(0, 6, 10, dtype=np.float32).reshape(10, 1)
    np.save(tmp_path / "c.npy", x)
    np.savez(tmp_path / "c.npz", x=x)
    np.save(tmp_path / "one.npy", np.float32([1.0]))
    assert load_calibration(tmp_path / "c.npy", hello).shape == (10, 1)
    assert load_calibration(tmp_path / "c.npz", hello).shape == (10, 1)
    assert load_calibration(tmp_path / "one.npy", hello).shape == (1, 1)


@pytest.mark.parametrize("data,message", [
    (np.zeros((4, 1), np.float64), "calibration data is float64, expected float32"),
    (np.zeros((4, 2), np.float32), r"has shape \[4, 2\], the model input is \[1, 1\]"),
    (np.zeros((0, 1), np.float32), "holds no samples"),
    (np.full((2, 1), np.nan, np.float32), "NaN or infinite"),
])
def test_bad_calibration_data_is_refused(tmp_path, hello, data, message):
    np.save(tmp_path / "bad.npy", data)
    with pytest.raises(UserError, match=message):
        load_calibration(tmp_path / "bad.npy", hello)


def test_npz_without_x_and_missing_file(tmp_path, hello):
    np.savez(tmp_path / "c.npz", images=np.zeros((2, 1), np.float32))
    with pytest.raises(UserError, match=r"\.npz has no key 'x' \(keys: images\)"):
        load_calibration(tmp_path / "c.npz", hello)
    with pytest.raises(UserError, match="no such calibration file"):
        load_calibration(tmp_path / "nope.npy", hello)


def test_already_quantized_graph_is_refused():
    graph = load_model(MODELS / "tflm" / "hello_world_int8.tflite")
    with pytest.raises(UserError, match="post-training quantization starts from a float32 model"):
        post_training_quantize(graph, np.zeros((2, 1), np.float32))


def test_a_dead_activation_gets_the_minimum_scale_and_live_ones_keep_theirs():
    for low, high in ((0.0, 0.0), (-1e-9, 1e-9), (0.0, 1e-5)):
        scale, zero_point = affine_params(low, high)
        assert scale == float(np.float32(MIN_SCALE)) and -128 <= zero_point <= 127
    assert affine_params(-1.0, 1.0)[0] == float(np.float32(2.0 / 255))
    assert affine_params(0.0, 6.0) == (float(np.float32(6.0 / 255)), -128)
