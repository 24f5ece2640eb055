"""LEAKY_RELU, the op added on top of the registry (README, "Adding an op"): its int8 reference
and C kernel are held to TensorFlow Lite Micro by tests/toolchain/test_ops.py; here the rest of
the op's definition, through a float PyTorch model: the ONNX reader, the float and torch
executors against torch itself, PTQ, the TFLite writer (TFLM runs our int8 file), and the kernel
cross-compiled and run in QEMU."""
import sys

import numpy as np
import torch
from torch import nn

from benchmarks.shared_models import REPO
from prune.torch_graph import GraphModule
from toolchain.driver import pipeline
from toolchain.driver.options import ConvertOptions, TargetOptions
from toolchain.driver.verify import verify
from toolchain.float_reference import run_float
from toolchain.importers import load_model
from toolchain.importers.tflite import import_tflite

sys.path.insert(0, str(REPO / "tests" / "toolchain"))
from test_importers_onnx import export  # noqa: E402


class Leaky(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.LeakyReLU(0.1)
        self.fc = nn.Linear(8 * 6 * 6, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.act(self.conv(x)), 1))


def leaky_model(tmp_path):
    torch.manual_seed(0)
    module = Leaky().eval()
    path = export(module, (1, 3, 6, 6), tmp_path / "leaky.onnx")
    x = np.random.default_rng(0).normal(0, 1, (16, 3, 6, 6)).astype(np.float32)
    np.save(tmp_path / "calib.npy", x)
    return module, path, x


def test_float_executors_match_torch(tmp_path):
    module, path, x = leaky_model(tmp_path)
    graph = load_model(path)
    leaky = [op for op in graph.ops if op.kind == "leaky_relu"]
    assert len(leaky) == 1 and leaky[0].attrs["alpha"] == np.float32(0.1)
    with torch.no_grad():
        expected = module(torch.tensor(x)).numpy()
        ours_torch = GraphModule(graph)(torch.tensor(x))[0].numpy()
    ours = np.concatenate([run_float(graph, [s[None]])[0] for s in x])
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours_torch, expected, rtol=1e-5, atol=1e-5)


def test_quantized_model_is_byte_exact_with_tflm_here_and_in_qemu(tmp_path):
    _, path, _ = leaky_model(tmp_path)
    out = tmp_path / "out"
    pipeline.convert(path, out, ConvertOptions(calib=tmp_path / "calib.npy"))
    written = import_tflite((out / "tflite" / "model_int8.tflite").read_bytes())
    assert [op.attrs["alpha"] for op in written.ops if op.kind == "leaky_relu"] == [np.float32(0.1)]
    assert "kernels/leaky_relu.c" in {p.relative_to(out / "c").as_posix() for p in (out / "c").rglob("*.c")}
    v = verify(out, "host")["verification"]
    assert v["bit_exact"] and v["tflm_bit_exact"], v
    pipeline.convert(path, out, ConvertOptions(TargetOptions("cortex-m4"), calib=tmp_path / "calib.npy"))
    assert verify(out, "cortex-m4")["verification"]["bit_exact"]
