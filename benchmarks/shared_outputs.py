"""Every valid shared model converted (and the int8 ones verified on host) by one checkout of the
project, into one folder per case: run it for two revisions and compare, to show a change keeps
every valid model's output the same.

    .venv/bin/python -m benchmarks.shared_outputs --repo /tmp/base --out /tmp/before   # e.g. git archive main
    .venv/bin/python -m benchmarks.shared_outputs --out /tmp/after
    .venv/bin/python -m benchmarks.shared_outputs --compare /tmp/before /tmp/after
"""
from __future__ import annotations

import argparse
import filecmp
import html
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.shared_models import INT8_MODELS, MODELS, PHOTOS, REPO

EXAMPLE = REPO / "examples"


def _calibration(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    cat = np.load(PHOTOS / "chelsea_cat_cifar32_uint8.npy").astype(np.float32)
    arrays = {"vww96": np.load(PHOTOS / "vww_like_rgb96_uint8.npy").astype(np.float32) / 255,
              "cifar": np.concatenate([cat, cat[:, ::-1]]),
              "hw": np.linspace(0, 6.28, 32, dtype=np.float32).reshape(32, 1),
              "mnist32": np.load(EXAMPLE / "mnist_torch" / "calib.npz")["x"][:32]}
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    return {name: folder / f"{name}.npy" for name in arrays}


def cases(calib: dict[str, Path]) -> list[tuple[str, list, bool]]:
    """(name, convert arguments, verify on host afterwards)."""
    found = []
    for target in ("host", "cortex-m4"):
        for name, path in {**INT8_MODELS, "mnist_int8": EXAMPLE / "mnist" / "mnist_cnn_int8.tflite"}.items():
            found.append((f"{name}-{target}", [path, "--target", target], True))
        found.append((f"mcunet_io8-{target}", [INT8_MODELS["mcunet_vww1_int8"], "--io", "int8", "--target", target], False))
    tiny = MODELS / "mlperf_tiny"
    for name, path, data in (("vww_float", tiny / "vww_96_float.tflite", "vww96"),
                             ("resnet8_float", tiny / "resnet8_float.tflite", "cifar"),
                             ("hw_float", MODELS / "tflm" / "hello_world_float.tflite", "hw"),
                             ("resnet8_h5", tiny / "resnet8.h5", "cifar"), ("vww_h5", tiny / "vww_96.h5", "vww96"),
                             *((f"mnist_{ext}", EXAMPLE / "mnist_torch" / f"mnist_mbv2.{ext}", "mnist32")
                               for ext in ("pt", "pt2", "onnx"))):
        found.append((f"{name}-host", [path, "--calib", calib[data]], False))
    return found


def run(repo: Path, out: Path) -> None:
    calib = _calibration(out / "calibration")
    for name, args, verify in cases(calib):
        # the CLI's module in that revision (toolchain/driver/ since issue 18)
        cli = [sys.executable, "-m", "toolchain.driver.cli" if (repo / "toolchain" / "driver" / "cli.py").exists()
               else "toolchain.cli"]
        log = out / f"{name}.log"
        with open(log, "w") as f:
            ok = subprocess.run(cli + ["convert", *map(str, args), "-o", str(out / name)], cwd=repo,
                                stdout=f, stderr=f).returncode == 0
            if ok and verify:
                ok = subprocess.run(cli + ["verify", str(out / name)], cwd=repo, stdout=f, stderr=f).returncode == 0
        print(f"{name}: {'ok' if ok else 'FAILED, see ' + str(log)}")


def compare(a: Path, b: Path) -> int:
    """Files that differ between two runs (convert.json's manifest and builds left out)."""
    differ = escaped = 0
    for case in sorted(p.name for p in a.iterdir() if p.is_dir() and p.name != "calibration"):
        for path in sorted((a / case).rglob("*")):
            rel = path.relative_to(a / case)
            if path.is_dir() or rel.parts[0] == "build" or rel.name == "convert.json":
                continue
            other = b / case / rel
            if other.exists() and filecmp.cmp(path, other, shallow=False):
                continue
            if other.exists() and rel.suffix == ".html" and html.unescape(path.read_text()) == html.unescape(other.read_text()):
                escaped += 1   # the same text, escaped differently (autoescape writes ' as &#39;)
                continue
            differ += 1
            print(f"{case}/{rel}: differs")
    print(f"{differ} files differ; {escaped} HTML files hold the same text escaped differently")
    return differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout whose CLI converts")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", type=Path, nargs=2)
    args = parser.parse_args()
    if args.compare:
        sys.exit(1 if compare(*args.compare) else 0)
    run(args.repo.resolve(), args.out.resolve())


if __name__ == "__main__":
    main()
