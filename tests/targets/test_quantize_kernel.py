"""QUANTIZE float32 -> int8 at the edges of its rounding and range: exact halves and their
neighbours, the saturation limits, values beyond int32, infinities and NaN. The integer reference
against TensorFlow Lite Micro, and the C kernel byte for byte against the reference, with a
floating-point unit (host, Cortex-M4F) and without (rv32imc: software floating point)."""
import numpy as np
import pytest

from tests.opmodels import op_model
from tests.targets.kernel_models import _q, expected_outputs, run_c, schedules
from toolchain import tflm
from toolchain.driver import pipeline
from toolchain.importers.tflite import import_tflite
from toolchain.ir import Graph, Op, Tensor
from toolchain.reference import run_reference

SCALE, ZERO_POINT = 0.25, -3


def edge_values(scale: float = SCALE) -> np.ndarray:
    halves = (np.arange(-300, 301, dtype=np.float32) + np.float32(0.5)) * np.float32(scale)
    limits = np.array([1024, 1024.25, 255.5, 1e9, 2.0 ** 31, 3e38], np.float32) * np.float32(scale)
    around = np.concatenate([halves, limits, -limits, [0.0, -0.0, 0.49999997, -0.49999997]]).astype(np.float32)
    values = np.concatenate([around, np.nextafter(around, np.float32(np.inf)),
                             np.nextafter(around, np.float32(-np.inf)),
                             np.array([np.inf, -np.inf, np.nan], np.float32)])
    return values.astype(np.float32)


def quantize_graph(n: int) -> Graph:
    tensors = {"x": Tensor("x", (1, n), "float32"),
               "y": Tensor("y", (1, n), "int8", quant=_q(SCALE, ZERO_POINT))}
    return Graph(tensors, [Op("quantize", ["x"], ["y"], {}, name="quantize")], ["x"], ["y"])


@pytest.mark.parametrize("target", ["host", "cortex-m4", "rv32imc"])
def test_quantize_rounds_and_saturates_like_the_reference(tmp_path, target):
    values = edge_values()
    graph = quantize_graph(values.size)
    with np.errstate(invalid="ignore"):
        expected = expected_outputs(graph, values)
    assert len(set(expected)) == 256                  # every int8 value, both ends saturated
    assert run_c(schedules(graph, False), tmp_path, target, [values]) == [expected]


def test_reference_quantize_matches_tflm_at_the_edges():
    model = op_model("quantize_dequantize", (1, 64), float_io=True)
    graph = import_tflite(model)
    quantize = next(op for op in graph.ops if op.kind == "quantize")
    values = edge_values(float(graph.tensors[quantize.outputs[0]].scale()))
    values = np.concatenate([values, np.zeros(-values.size % 64, np.float32)]).reshape(-1, 1, 64)
    theirs = tflm.run_tflm(model, [[x] for x in values], 1)
    with np.errstate(invalid="ignore"):
        for x, expected in zip(values, theirs):
            ours = run_reference(graph, [x])[0]
            assert np.array_equal(ours.view(np.uint8), expected[0].reshape(ours.shape).view(np.uint8))
