"""The readers' contract as properties (hypothesis): for any bytes, and for any damage to a real
model, a reader returns a graph that passed the IR checks or raises UserError, nothing else.
And the flatbuffer walk's schema is TensorFlow's: every slot is the one the `tflite` classes read."""
import inspect
import re

import pytest
import tflite
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.shared_models import INT8_MODELS, REPO
from toolchain.errors import UserError
from toolchain.importers.flatbuffer_check import SCHEMA, FlatbufferError, verify_tflite
from toolchain.importers.onnx import import_onnx
from toolchain.importers.tflite import import_tflite
from toolchain.ir import Graph
from toolchain.validate import check_graph

SEEDS = {name: INT8_MODELS[name].read_bytes() for name in ("hello_world_int8", "resnet8_int8")}
SEEDS["mnist"] = (REPO / "examples" / "mnist" / "mnist_cnn_int8.tflite").read_bytes()
ONNX_SEED = (REPO / "examples" / "mnist_torch" / "mnist_mbv2.onnx").read_bytes()


def test_schema_slots_are_the_ones_the_tflite_classes_read():
    for table, fields in SCHEMA.items():
        cls = getattr(tflite, table)
        for slot, (accessor, _, _) in fields.items():
            source = inspect.getsource(getattr(cls, accessor))
            assert re.search(rf"Offset\({slot}\)", source), (table, accessor, slot)


@st.composite
def damaged(draw, seeds):
    data = bytearray(draw(st.sampled_from(sorted(seeds.values(), key=len))))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["byte", "word", "cut"]))
        at = draw(st.integers(0, len(data) - 1))
        if kind == "byte":
            data[at] = draw(st.integers(0, 255))
        elif kind == "word":
            data[at:at + 4] = draw(st.integers(0, 2**32 - 1)).to_bytes(4, "little")
        else:
            del data[at:at + draw(st.integers(1, 64))]
    return bytes(data)


def _read(reader, data: bytes):
    try:
        graph = reader(data, "fuzzed")
    except UserError:
        return
    assert isinstance(graph, Graph)
    check_graph(graph, "fuzzed")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged(SEEDS))
def test_tflite_reader_on_damaged_models(data):
    _read(import_tflite, data)


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=0, max_size=512).map(lambda b: b[:4] + b"TFL3" + b[8:] if len(b) >= 8 else b))
def test_tflite_walk_on_any_bytes(data):
    try:
        verify_tflite(data)
    except FlatbufferError:
        return
    _read(import_tflite, data)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged({"onnx": ONNX_SEED}))
def test_onnx_reader_on_damaged_models(data):
    _read(import_onnx, data)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_undamaged_models_pass(name):
    check_graph(import_tflite(SEEDS[name], name), name)
