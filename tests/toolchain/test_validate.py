"""The IR checks every imported graph passes (toolchain/validate.py), one broken fact at a time."""
from dataclasses import replace

import numpy as np
import pytest

from benchmarks.shared_models import INT8_MODELS, MODELS, REPO
from toolchain.errors import UserError
from toolchain.importers import load_model
from toolchain.ir import Graph
from toolchain.validate import check_graph

MNIST = load_model(REPO / "examples" / "mnist" / "mnist_cnn_int8.tflite")
HELLO_FLOAT = load_model(MODELS / "tflm" / "hello_world_float.tflite")


def _with_op(graph, index, **attrs):
    ops = list(graph.ops)
    ops[index] = replace(ops[index], attrs={**ops[index].attrs, **attrs})
    return replace(graph, ops=ops)


def _with_tensor(graph, name, **fields):
    return replace(graph, tensors={**graph.tensors, name: replace(graph.tensors[name], **fields)})


def _first(graph, kind):
    return next(i for i, op in enumerate(graph.ops) if op.kind == kind)


def _conv():
    return _first(MNIST, "conv2d")


def _wider():
    o, kh, kw, i = MNIST.tensors[MNIST.ops[_conv()].inputs[1]].shape
    return (o, kh, kw, i + 1)


CASES = {
    "stride 0": (lambda: _with_op(MNIST, _conv(), stride=(0, 1)), "stride (0, 1) must be two integers"),
    "dilation huge": (lambda: _with_op(MNIST, _conv(), dilation=(1, 1 << 20)), "dilation"),
    "padding unknown": (lambda: _with_op(MNIST, _conv(), padding="reflect"), "neither same nor valid"),
    "output shape": (lambda: _with_tensor(MNIST, MNIST.ops[_conv()].outputs[0], shape=(1, 5, 5, 3)),
                     "the op computes"),
    "weights channels": (lambda: _with_tensor(MNIST, MNIST.ops[_conv()].inputs[1], shape=_wider(),
                                              data=np.zeros(_wider(), np.int8)), "input channels"),
    "scale zero": (lambda: _with_tensor(MNIST, MNIST.inputs[0], quant=replace(
        MNIST.tensors[MNIST.inputs[0]].quant, scale=np.float32([0.0]))), "finite and positive"),
    "zero point range": (lambda: _with_tensor(MNIST, MNIST.inputs[0], quant=replace(
        MNIST.tensors[MNIST.inputs[0]].quant, zero_point=np.int64([300]))), "zero point outside"),
    "nan weights": (lambda: _with_tensor(HELLO_FLOAT, HELLO_FLOAT.ops[0].inputs[1], data=np.full(
        HELLO_FLOAT.tensors[HELLO_FLOAT.ops[0].inputs[1]].shape, np.nan, np.float32)), "NaN or infinite"),
    "data of another shape": (lambda: _with_tensor(HELLO_FLOAT, HELLO_FLOAT.ops[0].inputs[1],
                                                   data=np.zeros((3,), np.float32)), "does not match"),
    "fc depth": (lambda: _with_tensor(HELLO_FLOAT, HELLO_FLOAT.ops[1].inputs[1], shape=(16, 7),
                                      data=np.zeros((16, 7), np.float32)), "whole number of rows"),
    "int8 in a float model": (lambda: _with_tensor(HELLO_FLOAT, HELLO_FLOAT.inputs[0], dtype="int8"),
                              "is int8 in a float model"),
}


@pytest.mark.parametrize("case", CASES)
def test_broken_fact_is_named(case):
    build, fragment = CASES[case]
    with pytest.raises(UserError, match=None) as info:
        check_graph(build(), "m.tflite")
    assert fragment in str(info.value) and str(info.value).startswith("m.tflite: ")


def test_ops_out_of_order_or_writing_twice_are_refused_at_construction():
    with pytest.raises(UserError, match="used before it is produced"):
        Graph(MNIST.tensors, list(reversed(MNIST.ops)), MNIST.inputs, MNIST.outputs)
    ops = list(MNIST.ops)
    ops[1] = replace(ops[1], outputs=list(ops[0].outputs))
    with pytest.raises(UserError, match="already a graph input, a constant or another op's output"):
        Graph(MNIST.tensors, ops, MNIST.inputs, MNIST.outputs)


@pytest.mark.parametrize("name", sorted(INT8_MODELS))
def test_shared_models_pass(name):
    check_graph(load_model(INT8_MODELS[name]), name)
