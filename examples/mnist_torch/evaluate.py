#!/usr/bin/env python3
"""Convert the trained example from each of its formats with tinydeploy, build the C program,
run it on all 1,000 test digits, and compare its accuracy with the float model's.

Usage (from the repo root; a few minutes, mostly compiling 1,000 float test inputs into C):
    .venv/bin/python examples/mnist_torch/evaluate.py [--calib-method mse] [--out-dir out/mnist_torch]

Each row is `tinydeploy convert <file> --calib calib.npz -o DIR` then
`tinydeploy verify DIR --inputs test_images.npy` (float32 C API, int8 inside): the C outputs are
also compared byte for byte with the reference executor and TensorFlow Lite Micro.
Writes metrics.json next to this script.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO)]
from data import load_split  # noqa: E402

from toolchain.driver import pipeline  # noqa: E402

from toolchain.driver.options import ConvertOptions, PrecisionOptions  # noqa: E402

from toolchain.driver.verify import verify  # noqa: E402
from toolchain.float_reference import run_float  # noqa: E402
from toolchain.importers import load_model  # noqa: E402

FORMATS = {"TorchScript": "mnist_mbv2.pt", "ExportedProgram": "mnist_mbv2.pt2", "ONNX": "mnist_mbv2.onnx"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calib-method", default="mse")
    ap.add_argument("--out-dir", type=Path, default=REPO / "out" / "mnist_torch")
    args = ap.parse_args()
    _, _, x_test, y_test = load_split()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    inputs = args.out_dir / "test_images.npy"
    np.save(inputs, x_test)

    with torch.no_grad():
        torch_logits = torch.jit.load(str(HERE / "mnist_mbv2.pt"))(torch.from_numpy(x_test)).numpy()
    float_acc = float((torch_logits.argmax(1) == y_test).mean())
    rows = []
    for fmt, name in FORMATS.items():
        out = args.out_dir / fmt
        report = pipeline.convert(HERE / name, out, ConvertOptions(precision=PrecisionOptions(args.calib_method), calib=HERE / "calib.npz"))
        graph = load_model(HERE / name)
        ours_float = np.array([run_float(graph, [x[None]])[0].argmax() for x in x_test])
        report = verify(out, "host", inputs)
        v = report["verification"]
        c_acc = float((np.array(report["predictions"]) == y_test).mean())
        rows.append({"format": fmt, "file": name, "float_accuracy_torch": float_acc,
                     "float_accuracy_tinydeploy": float((ours_float == y_test).mean()),
                     "int8_c_accuracy": c_acc, "difference_points": round(100 * (c_acc - float_acc), 2),
                     "c_vs_reference_bit_exact": v["bit_exact"], "c_vs_tflm_bit_exact": v["tflm_bit_exact"],
                     "inputs": v["inputs"], "arena_bytes": report["memory"]["arena_bytes"],
                     "weights_bytes": report["memory"]["weights_bytes"]})
    print(f"{'format':<16} {'float (torch)':>13} {'float (ours)':>12} {'int8 C':>8} {'diff':>7}  bit-exact ref / TFLM")
    for r in rows:
        print(f"{r['format']:<16} {r['float_accuracy_torch']:>13.1%} {r['float_accuracy_tinydeploy']:>12.1%} "
              f"{r['int8_c_accuracy']:>8.1%} {r['difference_points']:>+6.1f}p  "
              f"{r['c_vs_reference_bit_exact']} / {r['c_vs_tflm_bit_exact']}  ({r['inputs']} test digits)")
    metrics = {"test_images": len(y_test), "calib": "calib.npz (256 training images)",
               "calib_method": args.calib_method, "rows": rows}
    (HERE / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


if __name__ == "__main__":
    main()
