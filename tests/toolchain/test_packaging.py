"""`pip install .` gives a tinydeploy that finds its templates outside the source tree."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from benchmarks.shared_models import REPO

EXAMPLE = REPO / "examples" / "mnist" / "mnist_cnn_int8.tflite"


def test_wheel_carries_the_templates_and_converts(tmp_path):
    source = tmp_path / "src"  # a copy, so setuptools' build/ folder stays out of the checkout
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "out", "build", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("tinydeploy-*.whl"))
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    templates = {p.relative_to(site / "templates").as_posix() for p in (site / "templates").rglob("*.j2")}
    source = {p.relative_to(REPO / "templates").as_posix() for p in (REPO / "templates").rglob("*.j2")}
    assert templates == source
    env = dict(os.environ, PYTHONPATH=str(site))
    code = "import templates, toolchain.driver.cli as c; assert templates.__file__.startswith(%r); c.main()" % str(site)
    proc = subprocess.run([sys.executable, "-c", code, "convert", str(EXAMPLE), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "c" / "kernels" / "conv2d.c").exists()
