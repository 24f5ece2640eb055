"""One test per op: single-op int8 models from TensorFlow's converter, sweeping strides, paddings,
dilations, depth multipliers, per-channel and per-tensor quantization and odd shapes. Each model
runs through our reference executor and TensorFlow Lite Micro (byte-exact on many random inputs),
and through the emitted C program on the host (byte-exact with both)."""
import numpy as np
import pytest

from opmodels import op_model, op_names
from toolchain import tflm
from toolchain.driver import pipeline
from toolchain.driver.options import ConvertOptions, PatchOptions
from toolchain.driver.verify import verify
from toolchain.importers.tflite import import_tflite
from toolchain.reference import run_reference

CONV = [
    dict(filters=4, kernel=3, strides=1, padding="SAME"),
    dict(filters=5, kernel=(3, 2), strides=2, padding="VALID", activation="relu"),
    dict(filters=3, kernel=3, dilation=2, padding="SAME", activation="relu6"),
    dict(filters=7, kernel=1, bias=False),
    dict(filters=6, kernel=5, strides=2, padding="SAME"),
    dict(filters=2, kernel=(1, 3), strides=1, padding="VALID", dilation=3),
]
DEPTHWISE = [
    dict(kernel=3, strides=1, padding="SAME"),
    dict(kernel=3, strides=2, padding="VALID", depth_multiplier=2, activation="relu6"),
    dict(kernel=3, dilation=2, padding="SAME", activation="relu"),
    dict(kernel=5, strides=2, padding="SAME", depth_multiplier=3),
    dict(kernel=(3, 1), strides=1, padding="VALID"),
]
CASES = (
    [("conv2d", (1, 9, 11, 3), p, pc) for p in CONV for pc in (True, False)]
    + [("depthwise_conv2d", (1, 10, 9, 5), p, pc) for p in DEPTHWISE for pc in (True, False)]
    + [("fully_connected", (1, 23), dict(units=7), pc) for pc in (True, False)]
    + [("fully_connected", (1, 3, 3, 5), dict(units=9, activation="relu6"), True),
       ("fully_connected", (1, 16), dict(units=5, activation="relu", bias=False), True),
       ("add", (1, 5, 7, 3), dict(), True),
       ("add", (1, 4, 4, 6), dict(other_shape=(1, 1, 1, 6), activation="relu"), True),
       ("add", (1, 3, 5, 2), dict(other_shape=(1, 3, 1, 2), activation="relu6"), True),
       ("mul", (1, 4, 6, 3), dict(), True),
       ("mul", (1, 4, 4, 3), dict(other_shape=(3,), activation="relu6"), True),
       ("avg_pool2d", (1, 8, 8, 3), dict(pool=2, strides=2, padding="VALID"), True),
       ("avg_pool2d", (1, 7, 9, 3), dict(pool=3, strides=2, padding="SAME"), True),
       ("avg_pool2d", (1, 6, 6, 5), dict(pool=(6, 6), strides=1, padding="VALID"), True),
       ("max_pool2d", (1, 8, 8, 3), dict(pool=2, strides=2, padding="VALID"), True),
       ("max_pool2d", (1, 7, 7, 4), dict(pool=(3, 2), strides=1, padding="SAME"), True),
       ("mean", (1, 5, 3, 8), dict(axis=(1, 2), keepdims=True), True),
       ("mean", (1, 4, 4, 7), dict(axis=(1, 2), keepdims=False), True),
       ("mean", (1, 4, 6, 3), dict(axis=(2,), keepdims=True), True),
       ("mean", (1, 3, 4, 6), dict(axis=(3,), keepdims=True), True),
       ("mean", (1, 5, 2, 4), dict(axis=(1, 3), keepdims=False), True),
       ("pad", (1, 4, 5, 3), dict(paddings=[[0, 0], [1, 2], [2, 1], [0, 0]]), True),
       ("pad", (1, 3, 3, 2), dict(paddings=[[0, 0], [0, 0], [0, 0], [1, 3]]), True),
       ("reshape", (1, 4, 4, 3), dict(new_shape=(1, 48)), True),
       ("transpose", (1, 4, 5, 3), dict(perm=(0, 3, 1, 2)), True),
       ("transpose", (1, 2, 3, 4), dict(perm=(0, 2, 3, 1)), True),
       ("concat", (1, 4, 4, 3), dict(axis=3), True),
       ("concat", (1, 2, 3, 2), dict(axis=1, n_inputs=3), True),
       ("softmax", (1, 10), dict(), True),
       ("softmax", (1, 2, 2, 6), dict(beta=0.5), True),
       ("softmax", (1, 37), dict(beta=2.0), True),
       ("relu", (1, 4, 4, 3), dict(), True),
       ("relu6", (1, 5, 4, 3), dict(), True),
       ("leaky_relu", (1, 4, 5, 3), dict(), True),
       ("leaky_relu", (1, 37), dict(alpha=0.01), True),
       ("leaky_relu", (1, 3, 3, 8), dict(alpha=1.5), True),
       ("leaky_relu", (1, 6, 2), dict(alpha=-0.3), True),
       ("quantize_dequantize", (1, 4, 4, 3), dict(float_io=True), True),
       ("conv2d", (1, 6, 6, 3), dict(filters=4, kernel=3, float_io=True), True)]
)
TFLITE_NAME = {"conv2d": "CONV_2D", "depthwise_conv2d": "DEPTHWISE_CONV_2D", "fully_connected": "FULLY_CONNECTED",
               "add": "ADD", "mul": "MUL", "avg_pool2d": "AVERAGE_POOL_2D", "max_pool2d": "MAX_POOL_2D",
               "mean": "MEAN", "pad": "PAD", "reshape": "RESHAPE", "transpose": "TRANSPOSE",
               "concat": "CONCATENATION", "softmax": "SOFTMAX", "relu": "RELU", "relu6": "RELU6", "leaky_relu": "LEAKY_RELU",
               "quantize_dequantize": "QUANTIZE"}


def case_id(case):
    kind, shape, params, per_channel = case
    extra = ",".join(f"{k}={v}" for k, v in params.items())
    return f"{kind}-{'x'.join(map(str, shape))}-{extra}-{'pc' if per_channel else 'pt'}"


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_op_reference_and_c_match_tflm(tmp_path, case):
    kind, shape, params, per_channel = case
    params = dict(params)
    float_io = params.pop("float_io", False)
    model = op_model(kind, shape, seed=len(params), per_channel=per_channel, float_io=float_io, **params)
    assert TFLITE_NAME[kind] in op_names(model)
    graph = import_tflite(model)
    inputs = pipeline.random_inputs(graph, 40, seed=5)
    feeds = [pipeline.split_feeds(graph, x) for x in inputs]
    theirs = tflm.run_tflm(model, feeds, len(graph.outputs))
    for feed, expected in zip(feeds, theirs):
        ours = run_reference(graph, feed)
        for a, b in zip(ours, expected):
            assert np.array_equal(a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8))
    path = tmp_path / "op.tflite"
    path.write_bytes(model)
    pipeline.convert(path, tmp_path / "out", ConvertOptions(patch=PatchOptions("none")))
    np.save(tmp_path / "x.npy", np.stack(inputs[:8]))
    v = verify(tmp_path / "out", "host", tmp_path / "x.npy")["verification"]
    assert v["bit_exact"] and v["tflm_bit_exact"]
