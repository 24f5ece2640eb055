"""Dependency groups keep shapes consistent; removing channels is exact where they were dead."""
from dataclasses import replace

import numpy as np
import pytest

from benchmarks.shared_models import MODELS
from prune import prune_model
from prune.apply import prune_graph
from prune.groups import channel_groups
from prune.importance import activation
from prune.recover import recover
from prune.select import graph_macs
from prune.torch_graph import GraphModule
from toolchain.float_reference import run_float
from toolchain.importers import load_model
from toolchain.ir import Graph, Op, Tensor

RNG = np.random.default_rng(0)


class Builder:
    def __init__(self, shape):
        self.tensors, self.ops = {"x": Tensor("x", shape, "float32")}, []

    def const(self, shape):
        name = f"c{len(self.tensors)}"
        self.tensors[name] = Tensor(name, shape, "float32", RNG.normal(size=shape).astype(np.float32))
        return name

    def op(self, kind, inputs, out_shape, **attrs):
        name = f"t{len(self.tensors)}"
        self.tensors[name] = Tensor(name, out_shape, "float32")
        self.ops.append(Op(kind, inputs, [name], attrs, name=f"{len(self.ops)}:{kind}"))
        return name

    def conv(self, x, cout, k=3, act="relu"):
        n, h, w, c = self.tensors[x].shape
        return self.op("conv2d", [x, self.const((cout, k, k, c)), self.const((cout,))], (n, h, w, cout),
                       stride=(1, 1), padding="same", dilation=(1, 1), activation=act)

    def dw(self, x):
        n, h, w, c = self.tensors[x].shape
        return self.op("depthwise_conv2d", [x, self.const((1, 3, 3, c)), self.const((c,))], (n, h, w, c),
                       stride=(1, 1), padding="same", dilation=(1, 1), activation="relu6")

    def fc(self, x, units):
        depth = int(np.prod(self.tensors[x].shape[1:]))
        return self.op("fully_connected", [x, self.const((units, depth)), self.const((units,))],
                       (1, units), activation=None)

    def graph(self, out):
        return Graph(self.tensors, self.ops, ["x"], [out])


def residual_graph():
    b = Builder((1, 8, 8, 3))
    a = b.conv("x", 8)
    r = b.op("add", [a, b.conv(a, 8, act=None)], (1, 8, 8, 8), activation="relu")
    c = b.conv(r, 6)
    m = b.op("mean", [c], (1, 6), axes=(1, 2), keep_dims=False)
    return b.graph(b.fc(m, 3))


def depthwise_graph():
    b = Builder((1, 6, 6, 3))
    a = b.dw(b.conv("x", 8))
    c = b.conv(a, 6, k=1)
    flat = b.op("reshape", [b.op("max_pool2d", [c], (1, 3, 3, 6), filter=(2, 2), stride=(2, 2),
                                 padding="valid", activation=None)], (1, 54))
    return b.graph(b.fc(flat, 4))


def concat_graph():
    b = Builder((1, 6, 6, 3))
    cat = b.op("concat", [b.conv("x", 4), b.conv("x", 6)], (1, 6, 6, 10), axis=3, activation=None)
    c = b.conv(cat, 5, k=1)
    return b.graph(b.fc(b.op("mean", [c], (1, 5), axes=(1, 2), keep_dims=False), 2))


GRAPHS = {"residual": residual_graph, "depthwise": depthwise_graph, "concat": concat_graph}


def kill_channels(graph, groups, drop):
    """Zero the producers' filters and biases, and the depthwise followers' biases, of the
    dropped channels: the dead channels then contribute nothing downstream."""
    tensors = dict(graph.tensors)
    for sid, channels in drop.items():
        space = groups.spaces[sid]
        for index in space.producers + space.followers:
            op = graph.ops[index]
            for role, name in enumerate(op.inputs[1:3]):
                data = tensors[name].data.copy()
                axis = 3 if (op.kind == "depthwise_conv2d" and role == 0) else 0
                if op.kind == "depthwise_conv2d" and role == 0:
                    data[..., channels] = 0
                elif index in space.producers or role == 1:
                    np.moveaxis(data, axis, 0)[channels] = 0
                tensors[name] = replace(tensors[name], data=data)
    return replace(graph, tensors=tensors, ops=list(graph.ops))


@pytest.mark.parametrize("name", GRAPHS)
def test_removing_dead_channels_changes_no_output(name):
    graph = GRAPHS[name]()
    groups = channel_groups(graph)
    assert groups.prunable(), "each test graph has something to prune"
    drop = {s.id: np.array(sorted(RNG.choice(s.size, s.size // 2, replace=False))) for s in groups.prunable()}
    keep = {sid: np.setdiff1d(np.arange(groups.spaces[sid].size), d) for sid, d in drop.items()}
    dead = kill_channels(graph, groups, drop)
    pruned = prune_graph(dead, groups, keep)   # Graph validates on construction
    x = RNG.normal(size=graph.tensors["x"].shape).astype(np.float32)
    np.testing.assert_allclose(run_float(pruned, [x])[0], run_float(dead, [x])[0], rtol=1e-5, atol=1e-5)
    assert graph_macs(pruned) < graph_macs(graph)


def test_residual_add_couples_both_branches_and_the_classifier_is_frozen():
    graph = residual_graph()
    groups = channel_groups(graph)
    coupled = [s for s in groups.prunable() if len(s.producers) == 2]
    assert len(coupled) == 1 and sorted(coupled[0].producers) == [0, 1]
    out_space = groups.segments[graph.outputs[0]].parts[0][0]
    assert groups.spaces[out_space].frozen == "graph output (classifier)"


@pytest.mark.parametrize("name", GRAPHS)
def test_pruning_zero_percent_changes_nothing(name):
    graph = GRAPHS[name]()
    result = prune_model(graph, ratio=0.0)
    pruned, info = result.graph, result.report
    x = RNG.normal(size=graph.tensors["x"].shape).astype(np.float32)
    assert np.array_equal(run_float(pruned, [x])[0], run_float(graph, [x])[0])
    assert info["macs"][0] == info["macs"][1]


@pytest.mark.parametrize("name", GRAPHS)
def test_keep_everything_equals_the_original(name):
    graph = GRAPHS[name]()
    groups = channel_groups(graph)
    keep = {s.id: np.arange(s.size) for s in groups.prunable()}
    pruned = prune_graph(graph, groups, keep)
    assert all(pruned.tensors[n].shape == graph.tensors[n].shape for n in graph.tensors)
    x = RNG.normal(size=graph.tensors["x"].shape).astype(np.float32)
    assert np.array_equal(run_float(pruned, [x])[0], run_float(graph, [x])[0])


def test_torch_executor_matches_the_float_reference_on_real_models():
    import torch
    for path in (MODELS / "mlperf_tiny" / "resnet8_float.tflite", MODELS / "mlperf_tiny" / "vww_96_float.tflite"):
        graph = load_model(path)
        x = RNG.uniform(0, 1, (2,) + graph.tensors[graph.inputs[0]].shape[1:]).astype(np.float32)
        ours = GraphModule(graph)(torch.tensor(x))[0].detach().numpy()
        ref = np.concatenate([run_float(graph, [xi[None]])[0] for xi in x])
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_ratio_is_met_with_channel_counts_in_multiples_of_four():
    graph = load_model(MODELS / "mlperf_tiny" / "resnet8_float.tflite")
    result = prune_model(graph, ratio=0.4)
    pruned, info = result.graph, result.report
    assert info["macs"][1] <= 0.6 * info["macs"][0]
    for layer in info["layers"][:-1]:
        assert layer["out_channels"][1] % 4 == 0
    assert info["layers"][-1]["out_channels"] == [10, 10]  # classifier outputs untouched


def test_budget_search_meets_a_mac_budget():
    graph = load_model(MODELS / "mlperf_tiny" / "resnet8_float.tflite")
    result = prune_model(graph, budget=("macs", 6_000_000))
    pruned, info = result.graph, result.report
    assert info["macs"][1] <= 6_000_000
    gentler = prune_model(graph, ratio=max(info["ratio_requested"] - 0.05, 0)).graph
    assert graph_macs(gentler) > 6_000_000 or info["ratio_requested"] <= 0.05


def test_recovery_by_distillation_reduces_the_gap():
    graph = load_model(MODELS / "tflm" / "hello_world_float.tflite")
    x = np.linspace(0, 2 * np.pi, 256, dtype=np.float32).reshape(-1, 1)
    teacher = np.concatenate([run_float(graph, [xi[None]])[0] for xi in x])
    raw = prune_model(graph, ratio=0.5, calib=x, epochs=0).graph
    tuned = prune_model(graph, ratio=0.5, calib=x, epochs=60).graph
    err = lambda g: np.mean((np.concatenate([run_float(g, [xi[None]])[0] for xi in x]) - teacher) ** 2)
    assert err(tuned) < err(raw) / 2


def outputs(graph, x):
    return np.concatenate([run_float(graph, [xi[None]])[0] for xi in x])


def test_activation_importance_is_the_mean_absolute_activation_of_each_channel():
    graph = residual_graph()
    groups = channel_groups(graph)
    x = RNG.normal(size=(5, 8, 8, 3)).astype(np.float32)
    values = [run_float(graph, [xi[None]], keep=True) for xi in x]
    scores = activation(graph, groups, x, batch=2)
    for space in groups.prunable():
        mean = sum(np.abs(v[graph.ops[i].outputs[0]]).mean(axis=(0, 1, 2)) for v in values for i in space.producers)
        np.testing.assert_allclose(scores[space.id], mean / mean.mean(), rtol=1e-5)


def test_recovery_keeps_its_best_state_on_held_out_samples():
    """A run that only makes things worse (a learning rate that diverges) hands back the model it
    started from: recovery never ends worse than pruning left it on the held-out samples."""
    graph = residual_graph()
    x = RNG.normal(size=(40, 8, 8, 3)).astype(np.float32)
    pruned = prune_model(graph, ratio=0.5, calib=x, epochs=0).graph
    diverged = recover(pruned, graph, x, epochs=3, lr=1e3)
    np.testing.assert_array_equal(outputs(diverged, x), outputs(pruned, x))


def test_recovery_does_not_depend_on_how_folding_scaled_the_weights():
    """Inputs x255 and the first layer's weights /255 compute the same function (what folding
    batch norm into a model reading raw pixels leaves): recovery must train both alike."""
    graph = load_model(MODELS / "tflm" / "hello_world_float.tflite")
    x = np.linspace(0, 2 * np.pi, 128, dtype=np.float32).reshape(-1, 1)
    pruned = prune_model(graph, ratio=0.5, calib=x, epochs=0).graph

    def rescaled(g):
        w = g.ops[0].inputs[1]
        tensors = dict(g.tensors, **{w: replace(g.tensors[w], data=g.tensors[w].data / 255)})
        return replace(g, tensors=tensors, ops=list(g.ops))

    plain = recover(pruned, graph, x, epochs=10)
    scaled = recover(rescaled(pruned), rescaled(graph), x * 255, epochs=10)
    assert not np.allclose(outputs(plain, x), outputs(pruned, x), atol=1e-3)   # training moved it
    np.testing.assert_allclose(outputs(scaled, x * 255), outputs(plain, x), rtol=1e-3, atol=1e-4)
