"""No code from a model file runs unless the user says --trust-pickle: pickled objects, .pt2 guard
code, node targets and symbolic sizes, Keras Lambda layers and custom objects are refused."""
import json
import os
import pickle
import sys
import zipfile

import numpy as np
import pytest

from benchmarks.shared_models import REPO
from tests.fuzz.seeds import patched_pt2
from tests.toolchain.test_cli_errors import assert_one_line_failure, run_cli
from toolchain.errors import UserError
from toolchain.importers.keras_check import check_keras_config

EXAMPLE = REPO / "examples" / "mnist_torch"


class WritesAFile:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _torch_archive(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")


def test_pickled_reduce_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "written"
    _torch_archive(tmp_path / "evil.pt", pickle.dumps({"model": WritesAFile(marker)}, protocol=2))
    proc = run_cli("convert", tmp_path / "evil.pt", "--input-shape", "1,4", "-o", tmp_path / "out")
    assert_one_line_failure(proc, "pickled Python object", "'posix.system'", "--trust-pickle")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_pickled_module_loads_with_trust_pickle(tmp_path):
    sys.path.insert(0, str(EXAMPLE))
    import torch
    from model import MnistMobileNetV2
    torch.save(MnistMobileNetV2(width=8, head=16).eval(), tmp_path / "whole.pt")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).uniform(0, 1, (2, 1, 28, 28)).astype(np.float32))
    args = ["convert", tmp_path / "whole.pt", "--input-shape", "1,1,28,28", "--calib", tmp_path / "calib.npy",
            "--patch", "none"]
    assert_one_line_failure(run_cli(*args, "-o", tmp_path / "a"), "'model.MnistMobileNetV2'", "--trust-pickle")
    env = dict(os.environ, PYTHONPATH=str(EXAMPLE))
    import subprocess
    from tests.toolchain.test_cli_errors import CLI
    proc = subprocess.run(CLI + [str(a) for a in args] + ["-o", str(tmp_path / "b"), "--trust-pickle"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr   # torch's notices stay in its child


def _guard(marker):
    return lambda p: p.__setitem__("guards_code", [f"__import__('os').system('touch {marker}')"])


def _target(marker):
    def edit(p):
        p["graph_module"]["graph"]["nodes"][0]["target"] = "torch.os.system"
    return edit


def _sympy(marker):
    def edit(p):
        sizes = next(iter(p["graph_module"]["graph"]["tensor_values"].values()))["sizes"]
        sizes[0] = {"as_expr": {"expr_str": f"__import__('os').system('touch {marker}')", "hint": 1}}
    return edit


@pytest.mark.parametrize("edit,fragment", [(_guard, "guard code"), (_target, "calls 'torch.os.system'"),
                                           (_sympy, "symbolic sizes")])
def test_exported_program_code_is_refused(tmp_path, edit, fragment):
    marker = tmp_path / "written"
    patched_pt2(tmp_path / "evil.pt2", edit(marker))
    proc = run_cli("convert", tmp_path / "evil.pt2", "--calib", EXAMPLE / "calib.npz", "-o", tmp_path / "out")
    assert_one_line_failure(proc, fragment)
    assert not marker.exists()


def _config(*layers):
    return json.dumps({"module": "keras.src.models.functional", "class_name": "Functional",
                       "config": {"layers": list(layers)}, "registered_name": None})


@pytest.mark.parametrize("layer,fragment", [
    ({"module": "keras.layers", "class_name": "Lambda", "config": {"name": "lam", "function": "..."}},
     "'Lambda' layer 'lam' holds Python code"),
    ({"module": "os", "class_name": "system", "config": {}}, "custom object from module 'os'"),
    ({"module": "keras.layers", "class_name": "Dense", "config": {"name": "d"}, "registered_name": "Mine>Dense"},
     "registered custom object ('Mine>Dense')"),
])
def test_keras_code_and_custom_objects_are_refused(tmp_path, layer, fragment):
    plain = {"module": "keras.layers", "class_name": "Dense", "config": {"name": "ok"}, "registered_name": None}
    check_keras_config(_config(plain), tmp_path / "m.keras")
    with pytest.raises(UserError, match="--trust-pickle") as info:
        check_keras_config(_config(plain, layer), tmp_path / "m.keras")
    assert fragment in str(info.value)


def test_keras_lambda_file_is_refused_before_keras_loads_it(tmp_path):
    with zipfile.ZipFile(tmp_path / "lambda.keras", "w") as z:
        z.writestr("config.json", _config({"module": "keras.layers", "class_name": "Lambda",
                                           "config": {"name": "lam"}, "registered_name": None}))
        z.writestr("metadata.json", "{}")
        z.writestr("model.weights.h5", b"")
    assert_one_line_failure(run_cli("convert", tmp_path / "lambda.keras", "-o", tmp_path / "out"),
                            "holds Python code", "--trust-pickle")
