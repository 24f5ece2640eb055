"""PyTorch importer: the shipped MNIST example as TorchScript, ExportedProgram, ONNX and a pickled
module, each against torch itself on real test digits; refusals name the problem in one line."""
import sys

import numpy as np
import pytest
import torch

from benchmarks.shared_models import REPO
from toolchain.errors import UserError
from toolchain.float_reference import run_float
from toolchain.importers import load_model
from toolchain.read_policy import ReadPolicy

TRUSTED = ReadPolicy(trust_pickle=True)

EXAMPLE = REPO / "examples" / "mnist_torch"
sys.path.insert(0, str(EXAMPLE))
from data import load_split  # noqa: E402
from model import MnistMobileNetV2  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    _, _, x_test, _ = load_split()
    return x_test[:16]


@pytest.fixture(scope="module")
def torch_outputs(digits):
    module = torch.jit.load(str(EXAMPLE / "mnist_mbv2.pt"))
    with torch.no_grad():
        return module(torch.from_numpy(digits)).numpy()


@pytest.mark.parametrize("name", ["mnist_mbv2.pt", "mnist_mbv2.pt2", "mnist_mbv2.onnx"])
def test_example_formats_match_torch(name, digits, torch_outputs):
    graph = load_model(EXAMPLE / name)
    assert graph.tensors[graph.inputs[0]].shape == (1, 1, 28, 28)
    kinds = [op.kind for op in graph.ops]
    assert kinds.count("depthwise_conv2d") == 5 and kinds.count("add") == 3 and "relu6" not in kinds
    ours = np.concatenate([run_float(graph, [x[None]])[0] for x in digits])
    assert np.abs(ours - torch_outputs).max() <= 1e-5 * np.abs(torch_outputs).max()
    assert (ours.argmax(1) == torch_outputs.argmax(1)).all()


def _small_module():
    torch.manual_seed(0)
    return MnistMobileNetV2(width=8, head=16).eval()


def test_pickled_module_needs_trust_and_an_input_shape(tmp_path):
    module = _small_module()
    torch.save(module, tmp_path / "whole.pt")
    with pytest.raises(UserError, match=r"pickled Python object \('model.MnistMobileNetV2'\).*--trust-pickle"):
        load_model(tmp_path / "whole.pt", input_shape=(1, 1, 28, 28))
    with pytest.raises(UserError, match="does not record its input shape; pass --input-shape"):
        load_model(tmp_path / "whole.pt", policy=TRUSTED)
    graph = load_model(tmp_path / "whole.pt", input_shape=(1, 1, 28, 28), policy=TRUSTED)
    x = np.random.default_rng(0).uniform(0, 1, (1, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    assert np.abs(run_float(graph, [x])[0] - ref).max() <= 1e-5 * np.abs(ref).max()


def test_scripted_module_without_traced_inputs_takes_an_input_shape(tmp_path):
    torch.jit.save(torch.jit.script(_small_module()), tmp_path / "scripted.pt")
    with pytest.raises(UserError, match="TorchScript file does not record its input shape"):
        load_model(tmp_path / "scripted.pt")
    assert load_model(tmp_path / "scripted.pt", input_shape=(1, 1, 28, 28)).inputs


def test_state_dict_is_refused(tmp_path):
    torch.save(_small_module().state_dict(), tmp_path / "weights.pt")
    with pytest.raises(UserError, match=r"holds a state_dict \(weights without the network\)"):
        load_model(tmp_path / "weights.pt")


def test_pickled_module_of_an_unimportable_class_is_refused(tmp_path):
    code = ("import torch\nclass Hidden(torch.nn.Module):\n    def forward(self, x):\n        return x * 2\n"
            f"torch.save(Hidden(), {str(tmp_path / 'hidden.pt')!r})\n")
    import subprocess
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    with pytest.raises(UserError, match="the pickled module's class cannot be imported"):
        load_model(tmp_path / "hidden.pt", input_shape=(1, 4), policy=TRUSTED)


def test_exported_program_with_dynamic_batch_is_refused(tmp_path):
    module = _small_module()
    batch = torch.export.Dim("batch", min=2, max=64)
    program = torch.export.export(module, (torch.zeros(2, 1, 28, 28),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, tmp_path / "dynamic.pt2")
    with pytest.raises(UserError, match=r"input 'x' has a dynamic shape \['s\w+', '1', '28', '28'\]"):
        load_model(tmp_path / "dynamic.pt2")


def test_input_shape_is_only_for_pytorch_files():
    with pytest.raises(UserError, match="--input-shape is only for PyTorch files"):
        load_model(EXAMPLE / "mnist_mbv2.onnx", input_shape=(1, 1, 28, 28))
