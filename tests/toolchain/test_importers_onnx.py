"""ONNX importer: the supported ops against onnxruntime on random inputs, the NCHW -> NHWC layout
handling, batch-norm folding and activation fusion, and one-line refusals."""
import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from toolchain.errors import UserError
from toolchain.float_reference import run_float
from toolchain.importers import load_model


class Zoo(nn.Module):
    """Most of what the importer maps, in one graph mixing NHWC-friendly and layout-bound ops."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)   # stride 2, pad 1: explicit PAD + VALID
        self.dw = nn.Conv2d(8, 16, 3, padding=1, groups=8)    # depthwise, depth multiplier 2
        self.pw = nn.Conv2d(16, 8, 1)
        self.dilated = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
        self.corner = nn.Conv2d(8, 8, 2)
        self.bn = nn.BatchNorm2d(8)                            # after an add: stays a channel affine
        self.fc = nn.Linear(16 * 4 * 4 + 16, 12)
        self.head = nn.Linear(12, 5)
        self.bn.running_mean.uniform_(-0.5, 0.5)
        self.bn.running_var.uniform_(0.5, 2.0)
        self.bn.weight.data.uniform_(0.5, 1.5)
        self.bn.bias.data.uniform_(-0.5, 0.5)

    def forward(self, x):
        x = (x - 0.5) / 0.25                                   # Sub, Div by constants
        x = torch.relu(self.stem(x))                           # 8x8x8
        x = self.bn(x + nn.functional.relu6(self.pw(self.dw(x))))
        a = nn.functional.max_pool2d(x, 2)                     # 4x4
        b = nn.functional.avg_pool2d(nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False), 2)
        c = torch.relu(self.dilated(a)) + self.corner(nn.functional.pad(a, (1, 0, 1, 0)))  # Pad op
        z = torch.cat([a * 0.5, b + c], dim=1)                 # 16x4x4
        flat = torch.flatten(z, 1)                             # ONNX (C, H, W) order matters here
        g = torch.mean(z, dim=(2, 3))                          # ReduceMean without keepdims
        h = torch.relu(self.fc(torch.cat([flat, g], dim=1)))
        return torch.softmax(self.head(h), dim=-1)


class Small(nn.Module):
    def __init__(self, act=None):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = act or nn.ReLU()

    def forward(self, x):
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.act(self.conv(x)), 1), 1)


def export(module, shape, path, opset=17, **kwargs):
    module.eval()
    torch.onnx.export(module, (torch.zeros(shape),), path, dynamo=False, opset_version=opset,
                      input_names=["x"], output_names=["y"], **kwargs)
    return path


def assert_matches_onnxruntime(path, graph, shape, count=4, tol=1e-5):
    sess = ort.InferenceSession(str(path))
    rng = np.random.default_rng(0)
    for _ in range(count):
        x = rng.uniform(0, 1, size=shape).astype(np.float32)
        ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        ours = run_float(graph, [x])[0]
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() <= tol * np.abs(ref).max()


@pytest.mark.parametrize("opset", [13, 18])  # 18 moves ReduceMean's and Pad's axes into inputs
def test_op_zoo_matches_onnxruntime(tmp_path, opset):
    torch.manual_seed(0)
    path = export(Zoo(), (1, 3, 16, 16), tmp_path / "zoo.onnx", opset=opset)
    graph = load_model(path)
    kinds = [op.kind for op in graph.ops]
    assert graph.tensors[graph.inputs[0]].shape == (1, 3, 16, 16)   # the model's own layout
    assert kinds.count("transpose") == 2   # NCHW -> NHWC before the stem, back before Flatten
    assert {"pad", "concat", "mean", "max_pool2d", "avg_pool2d", "softmax", "transpose"} <= set(kinds)
    assert "relu" not in kinds and "relu6" not in kinds             # fused into their producers
    assert_matches_onnxruntime(path, graph, (1, 3, 16, 16))


def test_single_channel_input_needs_no_transpose(tmp_path):
    class Gray(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)

        def forward(self, x):
            return torch.flatten(self.conv(x), 1)

    path = export(Gray(), (1, 1, 6, 6), tmp_path / "gray.onnx")
    graph = load_model(path)
    # C=1: NCHW and NHWC hold the same bytes; flattening NHWC back to (C,H,W) order is a transpose
    assert [op.kind for op in graph.ops] == ["reshape", "conv2d", "transpose", "reshape"]
    assert_matches_onnxruntime(path, graph, (1, 1, 6, 6))


def _handmade(nodes, initializers, in_shape, out_shape, opset=13):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                          [numpy_helper.from_array(v.astype(np.float32), k) for k, v in initializers.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_batch_norm_after_conv_is_folded(tmp_path):
    rng = np.random.default_rng(1)
    init = {"w": rng.normal(size=(4, 3, 3, 3)), "b": rng.normal(size=4), "gamma": rng.uniform(0.5, 2, 4),
            "beta": rng.normal(size=4), "mean": rng.normal(size=4), "var": rng.uniform(0.5, 2, 4)}
    model = _handmade([helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
                       helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"]),
                       helper.make_node("Clip", ["n", "lo", "hi"], ["y"])],
                      {**init, "lo": np.array(0.0), "hi": np.array(6.0)}, [1, 3, 5, 5], [1, 4, 5, 5])
    path = tmp_path / "bn.onnx"
    path.write_bytes(model.SerializeToString())
    graph = load_model(path)
    assert [op.kind for op in graph.ops] == ["transpose", "conv2d", "transpose"]
    assert graph.ops[1].attrs["activation"] == "relu6"
    assert_matches_onnxruntime(path, graph, (1, 3, 5, 5))


def test_matmul_plus_add_becomes_one_fully_connected(tmp_path):
    rng = np.random.default_rng(2)
    model = _handmade([helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["r"]),
                       helper.make_node("Relu", ["r"], ["y"])],
                      {"w": rng.normal(size=(6, 3)), "b": rng.normal(size=3)}, [1, 6], [1, 3])
    path = tmp_path / "mm.onnx"
    path.write_bytes(model.SerializeToString())
    graph = load_model(path)
    assert [(op.kind, op.attrs.get("activation")) for op in graph.ops] == [("fully_connected", "relu")]
    assert_matches_onnxruntime(path, graph, (1, 6))


def test_dynamic_batch_is_refused(tmp_path):
    path = export(Small(), (1, 3, 8, 8), tmp_path / "dyn.onnx", dynamic_axes={"x": {0: "batch"}})
    with pytest.raises(UserError, match=r"input 'x' has a dynamic dimension 'batch' at axis 0"):
        load_model(path)


def test_unsupported_ops_are_all_named(tmp_path):
    path = export(Small(nn.Sigmoid()), (1, 3, 8, 8), tmp_path / "sig.onnx")
    with pytest.raises(UserError, match=r"unsupported ONNX op: Sigmoid \(1 node, first '/act/Sigmoid'\)"):
        load_model(path)


def test_old_opset_is_refused(tmp_path):
    path = export(Small(), (1, 3, 8, 8), tmp_path / "old.onnx", opset=11)
    with pytest.raises(UserError, match="opset 11; tinydeploy reads opset 13 and later"):
        load_model(path)


def test_grouped_convolution_is_refused(tmp_path):
    path = export(nn.Conv2d(4, 4, 3, groups=2), (1, 4, 6, 6), tmp_path / "grouped.onnx")
    with pytest.raises(UserError, match=r"grouped convolution \(group=2 of 4 channels\)"):
        load_model(path)


def test_garbage_with_onnx_extension(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(UserError, match="not a readable ONNX model"):
        load_model(tmp_path / "bad.onnx")
