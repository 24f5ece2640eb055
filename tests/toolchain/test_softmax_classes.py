"""int8 SOFTMAX for any class count: the reference equals TensorFlow Lite Micro wherever TFLM runs,
the C equals the reference everywhere (also where TFLM asserts: over 512 classes near the row's
maximum its fixed-point sum of exponentials outgrows the final division), and both stay within
one step of the float softmax."""
import dataclasses

import numpy as np
import pytest

from opmodels import op_model
from toolchain import tflm
from toolchain.driver import pipeline
from toolchain.driver.options import ConvertOptions, PatchOptions
from toolchain.driver.verify import verify
from toolchain.errors import UserError
from toolchain.importers.tflite import import_tflite
from toolchain.ops import lower
from toolchain.ops.softmax import beyond_tflm as softmax_beyond_tflm
from toolchain.reference import ops_beyond_tflm, run_reference

CLASSES = [2, 5, 64, 255, 512, 513, 700, 1000, 1024, 1500, 2048]


def inputs_for(graph, n: int) -> list[np.ndarray]:
    """Random rows, rows of one value (every class at the maximum), and one class far above the rest."""
    rows = list(pipeline.random_inputs(graph, 4, seed=n))
    rows += [np.full(n, v, np.int8) for v in (-128, 0, 127)]
    peak = np.full(n, -100, np.int8)
    peak[n // 2] = 120
    return rows + [peak]


@pytest.mark.parametrize("n", CLASSES)
def test_softmax_any_class_count(tmp_path, n):
    model = op_model("softmax", (1, n), seed=3)
    graph = import_tflite(model)
    xs = inputs_for(graph, n)
    feeds = [pipeline.split_feeds(graph, x) for x in xs]
    ours = [run_reference(graph, f)[0].reshape(-1) for f in feeds]
    beyond = [bool(ops_beyond_tflm(graph, f)) for f in feeds]
    assert any(beyond) == (n >= 512)   # 512 classes at the row's maximum: TFLM's sum needs 29 bits
    runnable = [i for i, b in enumerate(beyond) if not b]
    theirs = tflm.run_tflm(model, [feeds[i] for i in runnable], 1)
    if any(beyond):   # the prediction holds: TFLM does assert on such an input
        with pytest.raises(tflm.TflmFailure):
            tflm.run_tflm(model, [feeds[beyond.index(True)]], 1)
    for i, t in zip(runnable, theirs):
        assert np.array_equal(ours[i], t[0].reshape(-1)), f"input {i}"
    inp, out = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    for y, x in zip(ours, xs):
        logits = inp.scale() * (x.astype(np.float64) - inp.zero_point())
        p = np.exp(logits - logits.max())
        expected = np.clip(np.round(p / p.sum() / out.scale()) + out.zero_point(), -128, 127)
        assert np.abs(y.astype(np.int64) - expected).max() <= 1
    path = tmp_path / "softmax.tflite"
    path.write_bytes(model)
    pipeline.convert(path, tmp_path / "out", ConvertOptions(patch=PatchOptions("none")))
    np.save(tmp_path / "x.npy", np.stack(xs))
    v = verify(tmp_path / "out", "host", tmp_path / "x.npy")["verification"]
    assert v["bit_exact"] and v["tflm_bit_exact"]
    assert v.get("tflm_skipped_inputs", []) == [i for i, b in enumerate(beyond) if b]


def test_tflm_abort_is_a_failure_not_a_crash():
    """TFLM runs in a child process: its abort is an exception naming the input, not our death."""
    model = op_model("softmax", (1, 1000), seed=3)
    graph = import_tflite(model)
    feed = pipeline.split_feeds(graph, np.zeros(1000, np.int8))
    assert softmax_beyond_tflm(lower(graph, graph.ops[0]), feed[0])
    with pytest.raises(tflm.TflmFailure) as failure:
        tflm.run_tflm(model, [pipeline.split_feeds(graph, pipeline.random_inputs(graph, 1)[0]), feed], 1)
    assert failure.value.index == 1


def test_an_input_scale_too_small_to_rescale_is_one_line():
    graph = import_tflite(op_model("softmax", (1, 10), seed=3))
    op = graph.ops[0]
    t = graph.tensors[op.inputs[0]]
    t.quant = dataclasses.replace(t.quant, scale=np.array([1e-9], np.float32))   # beta x scale x 2^26 < 1
    with pytest.raises(UserError, match=r"softmax input scale 1e-09 .* must exceed 1"):
        lower(graph, op)
