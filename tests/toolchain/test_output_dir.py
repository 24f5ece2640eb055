"""-o only replaces an empty folder or a previous tinydeploy output; anything else is refused
(or, with --force, moved aside and kept); nothing is left behind by a refused or killed run."""
import os
import shutil
import signal
import subprocess
import time

import pytest

from benchmarks.shared_models import INT8_MODELS
from tests.toolchain.test_cli_errors import CLI, assert_one_line_failure, run_cli

MODEL = INT8_MODELS["hello_world_int8"]


def _snapshot(folder):
    return sorted((p.relative_to(folder).as_posix(), p.read_bytes() if p.is_file() else None)
                  for p in folder.rglob("*"))


def test_foreign_folder_is_refused_and_kept(tmp_path):
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("my notes")
    (out / "sub" / "data.bin").write_bytes(b"\x00\x01")
    before = _snapshot(out)
    assert_one_line_failure(run_cli("convert", MODEL, "-o", out), "did not write", "notes.txt", "--force")
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_force_moves_the_foreign_folder_aside(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    proc = run_cli("convert", MODEL, "-o", out, "--force")
    assert proc.returncode == 0, proc.stderr
    assert (out / "convert.json").exists() and "moved the folder" in proc.stdout
    assert (tmp_path / "mine.old-1" / "notes.txt").read_text() == "my notes"


def test_previous_output_is_replaced_but_not_once_changed(tmp_path):
    out = tmp_path / "out"
    assert run_cli("convert", MODEL, "-o", out).returncode == 0
    assert run_cli("convert", MODEL, "-o", out, "--patch", "none").returncode == 0   # ours: replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with open(out / "c" / "model.c", "a") as f:
        f.write("/* my edit */\n")
    assert_one_line_failure(run_cli("convert", MODEL, "-o", out), "changed since tinydeploy wrote them",
                            "c/model.c")
    assert (out / "c" / "model.c").read_text().endswith("/* my edit */\n")


@pytest.mark.parametrize("target", [".", "", "/", "..", "~"])
def test_current_root_and_home_folders_are_refused(tmp_path, target):
    (tmp_path / "keep.txt").write_text("x")
    proc = subprocess.run(CLI + ["convert", str(MODEL), "-o", os.path.expanduser(target)], capture_output=True,
                          text=True, cwd=tmp_path)
    assert_one_line_failure(proc, "-o")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_the_models_own_folder_is_refused(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(MODEL, folder / "hw.tflite")
    assert_one_line_failure(run_cli("convert", folder / "hw.tflite", "-o", folder), "an input of this run")
    assert_one_line_failure(run_cli("convert", folder / "hw.tflite", "-o", tmp_path), "an input of this run")
    assert (folder / "hw.tflite").read_bytes() == MODEL.read_bytes()


def test_parents_created_for_a_refused_run_are_removed(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    proc = run_cli("convert", INT8_MODELS["vww_96_int8"], "--target", "stm32f103c8", "--patch", "none", "-o", out)
    assert_one_line_failure(proc, "does not fit")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_convert_leaves_nothing_behind(tmp_path, signum):
    """Sent as soon as the staging folder appears; whenever it lands, nothing may be left."""
    out = tmp_path / "deep" / "out"
    proc = subprocess.Popen(CLI + ["convert", str(INT8_MODELS["resnet8_int8"]), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (tmp_path / "deep").exists() and any(p.name.startswith(".out.") for p in (tmp_path / "deep").iterdir()):
            break
        time.sleep(0.005)
    assert proc.poll() is None, "convert ended before its staging folder was seen"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert err.strip().splitlines() == [f"error: interrupted ({signal.Signals(signum).name})"]
    assert list(tmp_path.iterdir()) == []
