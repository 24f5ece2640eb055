"""TFLite artifacts: our int8 file reads back as the same graph and runs byte-exact in TFLite Micro
and in LiteRT's reference kernels (FULLY_CONNECTED aside: LiteRT rounds it once, TFLM twice);
the float32 file matches the float reference; the float16 file keeps float16 weights."""
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from benchmarks.shared_models import INT8_MODELS, MODELS, REPO
from quantize import post_training_quantize
from toolchain.tflite_export import export_tflite
from toolchain import tflm
from toolchain.float_reference import run_float
from toolchain.importers import load_model
from toolchain.importers.tflite import import_tflite
from toolchain.reference import run_reference

EXAMPLE = REPO / "examples" / "mnist_torch"


@pytest.fixture(scope="module")
def example():
    graph = load_model(EXAMPLE / "mnist_mbv2.onnx")
    quantized = post_training_quantize(graph, np.load(EXAMPLE / "calib.npz")["x"][:32], "mse")
    return graph, quantized, export_tflite(quantized)


def inputs(shape, count, seed=0):
    return [np.random.default_rng(seed + i).uniform(0, 1, shape).astype(np.float32) for i in range(count)]


def same_graph(a, b):
    assert a.inputs == b.inputs and a.outputs == b.outputs
    assert [(op.kind, op.inputs, op.outputs) for op in a.ops] == [(op.kind, op.inputs, op.outputs) for op in b.ops]
    for op_a, op_b in zip(a.ops, b.ops):
        for key, value in op_a.attrs.items():
            assert op_b.attrs[key] == value, (op_a.name, key)
    for name, t in a.tensors.items():
        u = b.tensors[name]
        assert (t.shape, t.dtype) == (u.shape, u.dtype), name
        if t.is_const:
            assert np.array_equal(t.data, u.data), name
        if t.quant is not None:
            assert np.array_equal(t.quant.scale.astype(np.float32), u.quant.scale), name
            assert np.array_equal(t.quant.zero_point, u.quant.zero_point), name
            assert (t.quant.axis if t.quant.per_channel else None) == (u.quant.axis if u.quant.per_channel else None)


def test_int8_file_reads_back_as_the_same_graph(example):
    _, quantized, data = example
    same_graph(quantized, import_tflite(data))


def test_int8_file_runs_byte_exact_in_tflite_micro(example):
    _, quantized, data = example
    xs = inputs((1, 1, 28, 28), 12)
    micro = tflm.run_tflm(data, [[x] for x in xs], 1)
    for x, (out,) in zip(xs, micro):
        assert out.tobytes() == run_reference(quantized, [x])[0].tobytes()


def test_int8_file_in_litert_reference_kernels(example):
    """Every tensor equal to our reference, except FULLY_CONNECTED outputs: one rounding step."""
    _, quantized, data = example
    interpreter = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                              experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    index = {d["name"]: d["index"] for d in interpreter.get_tensor_details()}
    fc_outputs = {op.outputs[0] for op in quantized.ops if op.kind == "fully_connected"}
    for x in inputs((1, 1, 28, 28), 4, seed=100):
        interpreter.set_tensor(index[quantized.inputs[0]], x)
        interpreter.invoke()
        ours = run_reference(quantized, [x], keep=True)
        for op in quantized.ops:
            name = op.outputs[0]
            theirs = interpreter.get_tensor(index[name])
            if name in fc_outputs:
                assert np.abs(theirs.astype(int) - ours[name].astype(int)).max() <= 1, name
            elif op.kind != "dequantize":
                assert np.array_equal(theirs, ours[name]), name


def test_float32_and_float16_files(example):
    graph, _, _ = example
    x = inputs((1, 1, 28, 28), 1)[0]
    expected = run_float(graph, [x])[0]
    sizes = {}
    for half in (False, True):
        data = export_tflite(graph, float16_weights=half)
        sizes[half] = len(data)
        interpreter = Interpreter(model_content=data)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        assert np.abs(out - expected).max() <= (3e-3 if half else 1e-5) * np.abs(expected).max()
    assert sizes[True] < 0.65 * sizes[False]
    same_graph(graph, import_tflite(export_tflite(graph)))


@pytest.mark.parametrize("name", ["vww_96_int8", "mcunet_vww1_int8"])
def test_tensorflow_int8_models_survive_export(name):
    """Models TensorFlow's converter wrote (PAD, TRANSPOSE, MEAN, float I/O) read back unchanged
    and give TFLite Micro the same bytes."""
    original = INT8_MODELS[name].read_bytes()
    graph = import_tflite(original)
    data = export_tflite(graph)
    same_graph(graph, import_tflite(data))
    t = graph.tensors[graph.inputs[0]]
    rng = np.random.default_rng(0)
    xs = [rng.uniform(-1, 1, t.shape).astype(np.float32) if t.dtype == "float32"
          else rng.integers(-128, 128, t.shape, dtype=np.int8) for _ in range(3)]
    ours = tflm.run_tflm(data, [[x] for x in xs], 1)
    theirs = tflm.run_tflm(original, [[x] for x in xs], 1)
    assert all(a[0].tobytes() == b[0].tobytes() for a, b in zip(ours, theirs))


def test_float_models_from_keras_export_with_tflite_ops():
    graph = load_model(MODELS / "mlperf_tiny" / "resnet8_float.tflite")
    same_graph(graph, import_tflite(export_tflite(graph)))
