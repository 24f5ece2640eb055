"""Names from a model file and the file system reach the reports, the C sources and error messages
only as text: report.html is autoescaped, C comments cannot be closed, errors stay on one line."""
import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.toolchain.test_cli_errors import assert_one_line_failure, run_cli

EVIL = "<script>alert('x')</script>\"*/\n/*"


def _model(path, op="Relu"):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), f"w{EVIL}")
    nodes = [helper.make_node("Conv", ["x" + EVIL, w.name], ["c" + EVIL], name="conv" + EVIL, kernel_shape=[3, 3]),
             helper.make_node(op, ["c" + EVIL], ["y" + EVIL], name="act" + EVIL)]
    graph = helper.make_graph(nodes, "g" + EVIL, [helper.make_tensor_value_info("x" + EVIL, TensorProto.FLOAT, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info("y" + EVIL, TensorProto.FLOAT, [1, 4, 4, 4])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_hostile_names_convert_and_stay_text(tmp_path):
    model = tmp_path / "m<script>\"'*\n.onnx"
    _model(model)
    np.save(tmp_path / "calib.npy", np.random.default_rng(1).normal(size=(4, 3, 6, 6)).astype(np.float32))
    out = tmp_path / "out"
    proc = run_cli("convert", model, "--calib", tmp_path / "calib.npy", "-o", out)
    assert proc.returncode == 0, proc.stderr
    html = (out / "report.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == model.name
    for source in (out / "c").rglob("*.[ch]"):
        text = source.read_text()
        assert "<script>" not in text and "alert(" not in text, source
        assert text.count("/*") == text.count("*/"), source   # no comment closed early or opened inside
    proc = run_cli("verify", out)   # builds with -Wall -Wextra -Werror (-Wcomment: no /* inside a comment)
    assert proc.returncode == 0, proc.stderr


def test_hostile_names_in_an_error_stay_on_one_line(tmp_path):
    model = tmp_path / "bad\n<b>.onnx"
    _model(model, op="Tanh")
    proc = run_cli("convert", model, "--calib", tmp_path / "none.npy", "-o", tmp_path / "out")
    assert_one_line_failure(proc, "unsupported ONNX op: Tanh", "\\n")
    assert not (tmp_path / "out").exists()


def test_a_file_name_that_is_not_utf8_converts(tmp_path):
    import os
    import shutil
    from benchmarks.shared_models import INT8_MODELS
    name = os.fsdecode(b"hw\xe4\xff.tflite")   # undecodable bytes: surrogates in Python
    shutil.copy(INT8_MODELS["hello_world_int8"], tmp_path / name)
    proc = run_cli("convert", tmp_path / name, "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "\\udce4" in (tmp_path / "out" / "report.html").read_text()
