"""The tool's own speed (issue 27): per model, `tinydeploy convert --target cortex-m4` with the
default (searched) schedule and with `--patch none`, run as a user runs it (the console script,
one process per convert, one after the other), its wall time, the share the schedule search
takes (report.json's convert_seconds), the peak RSS of the process tree, and a
`tinydeploy verify --target cortex-m4` (build with the cross compiler, run in QEMU, compare with
the reference and TFLM) of the default folder. Writes a table and a plot of convert time
against MACs and against op count.

    .venv/bin/python benchmarks/tool_speed.py [--models a,b] [--no-verify] \
        [--out benchmarks/tool_speed.md --plot benchmarks/tool_speed.png]

Models: every shared model (float ones with 5 calibration photos, as a user quantizes them),
the MNIST examples, and two made by a script with random weights (cached under build/):
MobileNetV2-1.0 at 224x224 quantized by the TFLite converter (int8 in and out), and a 1000-class
Keras MobileNetV2 (alpha 0.35, 96x96, saved as .h5) that tinydeploy quantizes itself.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.float_import_ptq import shared_photos  # noqa: E402
from benchmarks.keras_int8 import full_int8_tflite  # noqa: E402
from benchmarks.shared_models import INT8_MODELS, MODELS  # noqa: E402

CLI = str(Path(sys.executable).with_name("tinydeploy"))
BUILD = REPO / "build" / "tool_speed"
TARGET = "cortex-m4"
CALIB_SAMPLES = 5


@dataclass(frozen=True)
class Case:
    name: str
    path: Path | None                 # None: made by GENERATED[generate]
    calib: str | None = None          # a calibration set of make_calibration()
    generate: str | None = None


def make_mobilenet_v2_224_int8(path: Path) -> None:
    """keras.applications MobileNetV2 (alpha 1.0, 224x224, 1000 classes, random weights) through
    the TFLite converter's full-integer quantization (int8 input and output)."""
    import tensorflow as tf
    model = tf.keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=1.0, weights=None, classes=1000)
    path.write_bytes(full_int8_tflite(model, samples=8))


def make_keras_mobilenet_v2_1000(path: Path) -> None:
    """A float Keras MobileNetV2 (alpha 0.35, 96x96, a 1000-class softmax head, random
    weights), saved as .h5: tinydeploy's own PTQ quantizes it."""
    import tensorflow as tf
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=1000)
    model.save(path)


GENERATED = {"mobilenet_v2_224_int8.tflite": make_mobilenet_v2_224_int8,
             "keras_mobilenet_v2_1000.h5": make_keras_mobilenet_v2_1000}


def generated(name: str) -> Path:
    path = BUILD / name
    if not path.exists():
        BUILD.mkdir(parents=True, exist_ok=True)
        print(f"making {path} (once)", flush=True)
        GENERATED[name](path)
    return path


def make_calibration(work: Path) -> dict[str, Path]:
    """CALIB_SAMPLES real photos per input convention (vww: [0,1] at 96x96; resnet8: 0..255 at
    32x32; MobileNetV2: [-1,1] at 96x96), the MNIST example's own calibration digits."""
    vww, _ = shared_photos("vww")
    cifar, _ = shared_photos("resnet8")
    sets = {"vww": vww[:CALIB_SAMPLES], "resnet8": cifar[:CALIB_SAMPLES],
            "mobilenet": vww[:CALIB_SAMPLES] * 2.0 - 1.0,
            "hello_world": np.linspace(0, 2 * np.pi, CALIB_SAMPLES, dtype=np.float32).reshape(-1, 1),
            "mnist_torch": np.load(REPO / "examples" / "mnist_torch" / "calib.npz")["x"][:CALIB_SAMPLES]}
    paths = {}
    for name, data in sets.items():
        paths[name] = work / f"calib_{name}.npy"
        np.save(paths[name], data.astype(np.float32))
    return paths


def cases() -> list[Case]:
    torch_dir = REPO / "examples" / "mnist_torch"
    return ([Case(name, path) for name, path in INT8_MODELS.items()]
            + [Case("mnist_cnn_int8", REPO / "examples" / "mnist" / "mnist_cnn_int8.tflite"),
               Case("vww_96_float", MODELS / "mlperf_tiny" / "vww_96_float.tflite", "vww"),
               Case("resnet8_float", MODELS / "mlperf_tiny" / "resnet8_float.tflite", "resnet8"),
               Case("hello_world_float", MODELS / "tflm" / "hello_world_float.tflite", "hello_world"),
               Case("vww_96.h5", MODELS / "mlperf_tiny" / "vww_96.h5", "vww"),
               Case("resnet8.h5", MODELS / "mlperf_tiny" / "resnet8.h5", "resnet8"),
               Case("mnist_mbv2.onnx", torch_dir / "mnist_mbv2.onnx", "mnist_torch"),
               Case("mnist_mbv2.pt", torch_dir / "mnist_mbv2.pt", "mnist_torch"),
               Case("mobilenet_v2_224_int8", None, generate="mobilenet_v2_224_int8.tflite"),
               Case("keras_mobilenet_v2_1000.h5", None, "mobilenet", generate="keras_mobilenet_v2_1000.h5")])


def measure(args: list[str]) -> dict:
    """One command in a fresh Python helper that runs it and reports its own children's peak RSS,
    so each figure is this command's alone."""
    helper = ("import json, resource, subprocess, sys, time\n"
              "t = time.perf_counter()\n"
              "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
              "s = time.perf_counter() - t\n"
              "r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
              "print(json.dumps({'exit': p.returncode, 'seconds': s, 'rss': r, 'stdout': p.stdout,"
              " 'stderr': p.stderr}))\n")
    proc = subprocess.run([sys.executable, "-c", helper, *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})
    return json.loads(proc.stdout)


def one_case(case: Case, calib: dict[str, Path], work: Path, verify: bool) -> dict:
    path = generated(case.generate) if case.generate else case.path
    args = [CLI, "convert", str(path), "--target", TARGET]
    if case.calib:
        args += ["--calib", str(calib[case.calib])]
    row = {"model": case.name}
    for mode, flags in (("default", []), ("none", ["--patch", "none"])):
        out = work / f"{case.name}-{mode}"
        result = measure(args + flags + ["-o", str(out), "--force"])
        if result["exit"] != 0:
            row[mode] = {"error": (result["stderr"] or result["stdout"]).strip().splitlines()[-1:]}
            continue
        report = json.loads((out / "report.json").read_text())
        phases = report.get("convert_seconds", {})
        row[mode] = {"seconds": result["seconds"], "rss": result["rss"], "phases": phases,
                     "line": result["stdout"].strip().splitlines()[-1]}
        row.setdefault("report", report)
    if verify and "seconds" in row.get("default", {}):
        result = measure([CLI, "verify", str(work / f"{case.name}-default"), "--target", TARGET])
        row["verify"] = {"seconds": result["seconds"], "exit": result["exit"],
                         "line": (result["stdout"] or result["stderr"]).strip().splitlines()[-1:]}
    return row


def counts(report: dict) -> tuple[int, int]:
    """(ops, MACs) from report.json."""
    return len(report["layers"]), report["compute"]["macs"]


def table(rows: list[dict]) -> list[str]:
    lines = ["| model | ops | MACs | default convert | `--patch none` | default / none | search share (default) "
             "| peak RSS | verify (cortex-m4) |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        d, n = row.get("default", {}), row.get("none", {})
        if "seconds" not in d or "seconds" not in n:
            lines.append(f"| {row['model']} | | | failed: {d.get('error') or n.get('error')} | | | | | |")
            continue
        ops, macs = counts(row["report"])
        share = d["phases"].get("schedule", 0.0) / d["seconds"]
        verify = row.get("verify")
        verify_text = (f"{verify['seconds']:.1f} s" + ("" if verify["exit"] == 0 else f" (refused: {verify['line']})")
                       if verify else "")
        lines.append(f"| {row['model']} | {ops} | {macs:,} | {d['seconds']:.2f} s | {n['seconds']:.2f} s | "
                     f"{d['seconds'] / n['seconds']:.2f}x | {share:.0%} | {max(d['rss'], n['rss']) / 2**20:.0f} MB "
                     f"| {verify_text} |")
    return lines


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    done = [r for r in rows if "seconds" in r.get("default", {}) and "seconds" in r.get("none", {})]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    for ax, index, label in ((axes[0], 1, "MACs"), (axes[1], 0, "ops")):
        xs = [counts(r["report"])[index] for r in done]
        ax.scatter(xs, [r["default"]["seconds"] for r in done], label="default (searched)", color="#4c78a8")
        ax.scatter(xs, [r["none"]["seconds"] for r in done], label="--patch none", color="#f58518", marker="x")
        ax.set_xscale("log" if index == 1 else "linear")
        ax.set_xlabel(label)
        ax.set_ylabel("convert wall time (s)")
        ax.legend(fontsize=8)
    fig.suptitle(f"tinydeploy convert --target {TARGET}, one process per convert")
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    chosen = [c for c in cases() if args.models is None or c.name in args.models.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="tool-speed-") as tmp:
        work = Path(tmp)
        calib = make_calibration(work)
        for case in chosen:
            rows.append(one_case(case, calib, work, not args.no_verify))
            print(table(rows[-1:])[2], flush=True)
    lines = table(rows)
    cpu = os.cpu_count()
    text = "\n".join([f"# The tool's own speed\n",
                      f"`{' '.join(['.venv/bin/python benchmarks/tool_speed.py'] + sys.argv[1:])}` on this machine "
                      f"({cpu} cores), {time.strftime('%Y-%m-%d')}; every convert `--target {TARGET}`, one process "
                      f"each, one at a time. Search share: the schedule search's seconds (report.json "
                      f"`convert_seconds.schedule`) over the process's wall time.\n", *lines, ""])
    print("\n".join(lines))
    if args.out:
        args.out.write_text(text)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
