"""Issue 6 figures: structured pruning with label-free recovery.

1. The PyTorch MNIST example (examples/mnist_torch): MACs -50% and -70%, channels ranked by mean
   activation, pruned and recovered by distillation from the unpruned model on the 4,000
   training digits without their labels (the same file calibrates int8); the emitted C program's
   accuracy on the 1,000 test digits beside the float model's.
2. resnet8.h5 and vww_96.h5 pruned by 40% of MACs: top-1 agreement with the unpruned float model
   on 200 held-out augmentations of the shared photos, before and after recovery (recovery and
   calibration use 300 augmentations of another seed; see benchmarks/float_import_ptq.py).
3. With --target (e.g. cortex-m4): flash, peak SRAM and instructions per inference of the pruned
   and unpruned MNIST programs, measured by `tinydeploy verify` on the target.

    .venv/bin/python benchmarks/pruning.py [--target cortex-m4] [--out benchmarks/pruning.md]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "examples" / "mnist_torch")]

from benchmarks.float_import_ptq import augment, shared_photos  # noqa: E402
from benchmarks.shared_models import MODELS  # noqa: E402
from data import load_split  # noqa: E402
from prune import prune_model  # noqa: E402
from toolchain.driver import pipeline  # noqa: E402
from toolchain.driver.options import ConvertOptions, PruneOptions  # noqa: E402
from toolchain.driver.verify import verify  # noqa: E402
from toolchain.float_reference import run_float  # noqa: E402
from toolchain.importers import load_model  # noqa: E402

MNIST = REPO / "examples" / "mnist_torch" / "mnist_mbv2.onnx"
FLOAT_ACCURACY_FILE = REPO / "examples" / "mnist_torch" / "train_metrics.json"


def mnist_rows(work: Path, target: str | None) -> list[str]:
    import json
    x_train, _, x_test, y_test = load_split()
    calib, tests = work / "calib.npy", work / "test.npy"
    np.save(calib, x_train)
    np.save(tests, x_test)
    float_acc = json.loads(FLOAT_ACCURACY_FILE.read_text())["float_test_accuracy"]
    rows = ["| MNIST (PyTorch, ONNX file) | MACs | params | C int8 test accuracy | vs float (97.9%) "
            "| bit-exact | arena | weights |", "|---|---|---|---|---|---|---|---|"]
    targets = []
    for ratio in (None, 0.5, 0.7):
        out = work / f"mnist-{ratio}"
        prune = PruneOptions(ratio, importance="activation", epochs=60) if ratio else None
        report = pipeline.convert(MNIST, out, ConvertOptions(prune=prune, calib=calib))
        verified = verify(out, "host", tests)
        acc = float((np.array(verified["predictions"]) == y_test).mean())
        p = report.get("pruning")
        macs = f"{p['macs'][1]:,} ({p['macs'][1] / p['macs'][0] - 1:+.0%})" if p else f"{report['compute']['macs']:,}"
        params = f"{p['params'][1]:,}" if p else "-"
        rows.append(f"| {'unpruned' if ratio is None else f'--prune {ratio}'} | {macs} | {params} | {acc:.1%} "
                    f"| {100 * (acc - float_acc):+.1f} points | {verified['verification']['bit_exact']} "
                    f"| {report['memory']['arena_bytes']:,} | {report['memory']['weights_bytes']:,} |")
        if target:
            targets.append((ratio, out))
    if target:
        rows += ["", f"| MNIST on {target} | flash | peak SRAM | instructions / inference | bit-exact |",
                 "|---|---|---|---|---|"]
        for ratio, out in targets:
            r = verify(out, target, tests.parent / "few.npy" if (tests.parent / "few.npy").exists()
                                else _few(tests))
            m, v = r["memory"], r["verification"]
            rows.append(f"| {'unpruned' if ratio is None else f'--prune {ratio}'} | {m['flash_bytes']:,} "
                        f"| {m['peak_sram_bytes']:,} | {v['instructions_per_inference']:,} | {v['bit_exact']} |")
    return rows


def _few(tests: Path) -> Path:
    few = tests.parent / "few.npy"
    np.save(few, np.load(tests)[:10])
    return few


def top1(graph, images) -> np.ndarray:
    return np.array([int(np.argmax(run_float(graph, [x[None]])[0])) for x in images])


def keras_rows() -> list[str]:
    rows = ["| model | MACs | pruned MACs | agreement before recovery | after recovery |", "|---|---|---|---|---|"]
    for name in ("resnet8", "vww_96"):
        graph = load_model(MODELS / "mlperf_tiny" / f"{name}.h5")
        photos, top = shared_photos("resnet8" if name == "resnet8" else "vww")
        calib, held_out = augment(photos, top, 300, seed=1), augment(photos, top, 200, seed=2)
        reference = top1(graph, held_out)
        raw = prune_model(graph, ratio=0.4, importance="activation", calib=calib, epochs=0)
        info, raw = raw.report, raw.graph
        tuned = prune_model(graph, ratio=0.4, importance="activation", calib=calib, epochs=60).graph
        rows.append(f"| {name}.h5 | {info['macs'][0]:,} | {info['macs'][1]:,} ({info['macs'][1] / info['macs'][0] - 1:+.0%}) "
                    f"| {np.mean(top1(raw, held_out) == reference):.1%} | {np.mean(top1(tuned, held_out) == reference):.1%} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default=None)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lines = mnist_rows(Path(tmp), args.target) + [""] + keras_rows()
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
