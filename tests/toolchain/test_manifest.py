"""verify on a folder whose convert.json or report.json was tampered with, or whose files were
deleted or truncated: one line, exit 2 (convert.json's schema and manifest)."""
import json
import shutil

import pytest

from benchmarks.shared_models import INT8_MODELS
from tests.toolchain.test_cli_errors import assert_one_line_failure, run_cli


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("manifest") / "hw"
    assert run_cli("convert", INT8_MODELS["hello_world_int8"], "-o", out).returncode == 0
    return out


def _edit_json(name, **changes):
    def edit(folder):
        document = json.loads((folder / name).read_text())
        for key, value in changes.items():
            if value is None:
                document.pop(key)
            else:
                document[key] = value
        (folder / name).write_text(json.dumps(document))
    return edit


def _truncate(rel):
    def edit(folder):
        data = (folder / rel).read_bytes()
        (folder / rel).write_bytes(data[:len(data) // 2])
    return edit


def _delete(rel):
    return lambda folder: (folder / rel).unlink()


def _write(rel, text):
    return lambda folder: (folder / rel).write_text(text)


TAMPERED = {
    "prefix is code": (_edit_json("convert.json", prefix='x; system("rm -rf ~"); int y'), "prefix"),
    "unknown target": (_edit_json("convert.json", target="z80"), "unknown target 'z80'"),
    "io not a choice": (_edit_json("convert.json", io="float64"), "io"),
    "no manifest": (_edit_json("convert.json", files=None), "'files' is a required property"),
    "limits zero": (_edit_json("convert.json", limits={"max_file_bytes": 0}), "limits"),
    "convert.json not JSON": (_write("convert.json", "{not json"), "not valid JSON"),
    "report.json not JSON": (_write("report.json", "[1, 2"), "not valid JSON"),
    "report.json without memory": (_edit_json("report.json", memory=None), "'memory' is a required property"),
    "model.c deleted": (_delete("c/model.c"), "'c/model.c' is missing"),
    "weights truncated": (_truncate("c/model_weights.c"), "'c/model_weights.c' was changed or truncated"),
    "tflite truncated": (_truncate("tflite/model_int8.tflite"), "'tflite/model_int8.tflite' was changed"),
    "kernel edited": (_write("c/kernels/fully_connected.c", "int x;\n"), "was changed or truncated"),
    "test inputs deleted": (_delete("c/harness/test_inputs.npy"), "test_inputs.npy' is missing"),
    "test inputs truncated": (_truncate("c/harness/test_inputs.npy"), "test_inputs.npy"),
}


@pytest.mark.parametrize("case", TAMPERED)
def test_tampered_folder_is_refused_in_one_line(converted, tmp_path, case):
    edit, fragment = TAMPERED[case]
    folder = tmp_path / "copy"
    shutil.copytree(converted, folder)
    edit(folder)
    assert_one_line_failure(run_cli("verify", folder), fragment)


def test_untouched_folder_verifies(converted, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(converted, folder)
    proc = run_cli("verify", folder)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
