"""Issue 7 figures: QuantMCU (VDPC + VDQS) on a patch-based schedule.

1. The PyTorch MNIST example (examples/mnist_torch, ONNX file), `--patch auto` (its stage 4x4@8),
   converted at int8 and with `--quantmcu` over a sweep of --outlier-sigma and --vdqs-lambda:
   the bits VDQS chose for the low path, the outlier-patch fraction (patches that ran int8) on
   the calibration and on the 1,000 test digits, patch-stage BitOPs per inference against int8
   on the test digits, and the C program's test accuracy (built and run on the host by
   `tinydeploy verify --inputs`, every output byte compared with the QuantMCU reference).
2. Chosen rows in QEMU (cortex-m4, rv32imc) on 20 test digits: byte-exact, instructions per
   inference against the int8 program of the same schedule.
3. The shared int8 models, calibrated on 64 seeded augmentations of the shared photos (no
   labelled data for them exists here) and measured on 100 held-out augmentations: bits,
   outlier patches, BitOPs, top-1 agreement with the int8 program of the same schedule, byte-exact
   on the host and on cortex-m4.

    .venv/bin/python benchmarks/quantmcu.py [--out benchmarks/quantmcu.md]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "examples" / "mnist_torch")]

from benchmarks.float_import_ptq import augment, shared_photos  # noqa: E402
from benchmarks.shared_models import INT8_MODELS, real_float_inputs, to_model_input  # noqa: E402
from data import load_split  # noqa: E402
from quantize.quantmcu import DEFAULT_LAMBDA, DEFAULT_SIGMA  # noqa: E402
from toolchain.driver import pipeline  # noqa: E402
from toolchain.driver.manifest import MODEL_FILE  # noqa: E402
from toolchain.driver.verify import verify  # noqa: E402
from toolchain.driver import report as report_mod  # noqa: E402

MODEL = "examples/mnist_torch/mnist_mbv2.onnx"
CALIB = "examples/mnist_torch/calib.npz"
SIGMAS = (3, 4, 5, 6)
LAMBDAS = (0.3, 0.5, 0.7)
EMULATED = ((6, 0.3), (DEFAULT_SIGMA, DEFAULT_LAMBDA))
TARGETS = ("cortex-m4", "rv32imc")
FLOAT_ACCURACY = json.loads((REPO / "examples" / "mnist_torch" / "train_metrics.json").read_text())["float_test_accuracy"]


def convert(out: Path, model, calib, extra: list[str]) -> str:
    args = ["convert", str(model), *(["--calib", str(calib)] if calib else []), *extra, "-o", str(out)]
    # the CLI of this checkout (as .venv/bin/tinydeploy runs it from the repository root)
    subprocess.run([sys.executable, "-c", "from toolchain.driver.cli import main; main()", *args], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    return "tinydeploy " + " ".join(args[:-1] + ["DIR"])


def quantmcu_dir(work: Path, sigma, lam) -> Path:
    return work / f"q-{float(sigma):g}-{float(lam):g}"


def quantmcu_args(sigma, lam) -> list[str]:
    return ["--quantmcu", "--outlier-sigma", str(sigma), "--vdqs-lambda", str(lam)]


def accuracy(out: Path, tests: Path, labels: np.ndarray) -> tuple[float, dict]:
    report = verify(out, "host", tests)
    assert report["verification"]["bit_exact"], out
    return float(np.mean(np.array(report["predictions"]) == labels)), report


def mnist_rows(work: Path) -> tuple[list[str], list[str]]:
    _, _, x_test, y_test = load_split()
    tests, few = work / "test.npy", work / "few.npy"
    np.save(tests, x_test)
    np.save(few, x_test[:20])
    int8_dir = work / "int8"
    commands = [convert(int8_dir, MODEL, CALIB, [])]
    int8_acc, int8_report = accuracy(int8_dir, tests, y_test)
    stage = int8_report["plan"]["patch"]
    rows = [f"Patch stage {stage} (ops {int8_report['plan']['stage']['first_op']}-{int8_report['plan']['stage']['last_op']}), "
            f"int8 C test accuracy {int8_acc:.1%}, float {FLOAT_ACCURACY:.1%}.", "",
            "| --outlier-sigma | --vdqs-lambda | low-path bits (stage input, then each map) | input bounds (int8) "
            "| outlier patches: calibration / test | patch-stage BitOPs per inference, test mean | of int8 | fewer "
            "| C test accuracy | vs int8 | bit-exact |", "|---" * 11 + "|"]
    int8_bitops = None
    for sigma in SIGMAS:
        for lam in LAMBDAS:
            out = quantmcu_dir(work, sigma, lam)
            commands.append(convert(out, MODEL, CALIB, quantmcu_args(sigma, lam)))
            acc, report = accuracy(out, tests, y_test)
            q = report["quantmcu"]
            cal, test = q["patch_stage_bitops"]["calibration"], q["patch_stage_bitops"]["verified_inputs"]
            int8_bitops = test["int8"]
            mark = " (default)" if (sigma, lam) == (DEFAULT_SIGMA, DEFAULT_LAMBDA) else ""
            rows.append(f"| {sigma}{mark} | {lam} | {'/'.join(str(b) for b in q['bits'].values())} "
                        f"| [{q['input_bounds'][0]}, {q['input_bounds'][1]}] "
                        f"| {cal['outlier_patch_fraction']:.1%} / {test['outlier_patch_fraction']:.1%} "
                        f"| {test['mean']:,} | {test['mean'] / test['int8']:.1%} | {test['reduction']:.2f}x "
                        f"| {acc:.1%} | {100 * (acc - int8_acc):+.1f} points | yes |")
            print(rows[-1], flush=True)
    rows += ["", f"int8 patch-stage BitOPs per inference: {int8_bitops:,} (the stage's executed MACs, patch "
             f"halos recomputed, x 8 x 8)."]
    rows += ["", "| configuration | target | bit-exact (20 test digits) | instructions / inference | vs int8 "
             "| flash | peak SRAM |", "|---|---|---|---|---|---|---|"]
    for target in TARGETS:
        base = verify(int8_dir, target, few)
        base_count = base["verification"]["instructions_per_inference"]
        rows.append(_target_row("int8", target, base, base_count))
        for sigma, lam in EMULATED:
            report = verify(quantmcu_dir(work, sigma, lam), target, few)
            rows.append(_target_row(f"--quantmcu, sigma {sigma}, lambda {lam}", target, report, base_count))
    return rows, commands


def _target_row(name, target, report, base_count) -> str:
    v, m = report["verification"], report["memory"]
    count = v["instructions_per_inference"]
    return (f"| {name} | {target} | {'yes' if v['bit_exact'] else 'NO'} | {count:,} | {count / base_count - 1:+.1%} "
            f"| {m['flash_bytes']:,} | {m['peak_sram_bytes']:,} |")


# the real-valued input range of each shared model (benchmarks/shared_models.real_float_inputs)
INPUT_RANGE = {"vww_96_int8": (0.0, 1.0), "mcunet_vww1_int8": (-1.0, 1.0), "resnet8_int8": (0.0, 255.0)}


def augmented_photos(name: str, count: int, seed: int) -> np.ndarray:
    """Seeded augmentations (benchmarks/float_import_ptq.augment) of the model's real inputs."""
    lo, hi = INPUT_RANGE[name]
    if name == "resnet8_int8":   # the cat, and the VWW photos brought down to 32 x 32
        photos, _ = shared_photos("resnet8")
    else:
        photos = np.stack([image for _, image in real_float_inputs(name)]).astype(np.float32)
    unit = (photos - lo) / (hi - lo)
    return augment(unit, 1.0, count, seed) * (hi - lo) + lo


def shared_rows(work: Path, sigma=DEFAULT_SIGMA, lam=DEFAULT_LAMBDA) -> tuple[list[str], list[str]]:
    rows = ["| model | patch stage | low-path bits | outlier patches: calibration / held out "
            "| patch-stage BitOPs per inference, held-out mean | of int8 "
            "| top-1 agreement with the int8 program (held out) | bit-exact: host (held out), cortex-m4 (10 of them) |",
            "|---" * 8 + "|"]
    commands = []
    for name, io in (("vww_96_int8", "model"), ("mcunet_vww1_int8", "int8"), ("resnet8_int8", "model")):
        calib, held = work / f"{name}-calib.npy", work / f"{name}-held.npy"
        np.save(calib, augmented_photos(name, 64, seed=1).astype(np.float32))
        int8_dir, out = work / f"{name}-int8", work / name
        convert(int8_dir, INT8_MODELS[name], None, ["--io", io])
        graph = pipeline.prepare_graph(int8_dir / MODEL_FILE, io)
        held_out = augmented_photos(name, 100, seed=2)
        np.save(held, np.stack([to_model_input(graph, x) for x in held_out]))
        np.save(work / "ten.npy", np.load(held)[:10])
        commands.append(convert(out, INT8_MODELS[name], calib, ["--io", io, *quantmcu_args(sigma, lam)])
                        .replace(str(calib), "CALIB.npy"))
        int8_top = np.array(verify(int8_dir, "host", held)["predictions"])
        report = verify(out, "host", held)
        q = report["quantmcu"]
        cal, test = q["patch_stage_bitops"]["calibration"], q["patch_stage_bitops"]["verified_inputs"]
        agree = float(np.mean(np.array(report["predictions"]) == int8_top))
        m4 = verify(out, "cortex-m4", work / "ten.npy")["verification"]["bit_exact"]
        rows.append(f"| {name}{' --io int8' if io == 'int8' else ''} | {q['stage']} "
                    f"| {'/'.join(str(b) for b in q['bits'].values())} "
                    f"| {cal['outlier_patch_fraction']:.1%} / {test['outlier_patch_fraction']:.1%} "
                    f"| {test['mean']:,} | {test['mean'] / test['int8']:.1%} | {agree:.0%} of {len(int8_top)} "
                    f"| {'yes' if report['verification']['bit_exact'] else 'NO'}, {'yes' if m4 else 'NO'} |")
        print(rows[-1], flush=True)
    return rows, commands


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        mnist, mnist_commands = mnist_rows(Path(tmp))
        shared, shared_commands = shared_rows(Path(tmp))
    lines = ["# QuantMCU on a patch-based schedule (issue 7)", "",
             f"Produced by `.venv/bin/python benchmarks/quantmcu.py --out benchmarks/quantmcu.md` at {commit}.", "",
             "## MNIST example: sweep of the outlier bounds and VDQS's lambda", "", *mnist, "",
             "Commands (then `tinydeploy verify DIR --inputs test.npy`, the 1,000 test digits of "
             "examples/mnist_torch/data.py, or `--target T --inputs` 20 of them):", "",
             *[f"    {c}" for c in mnist_commands], "",
             "## The shared int8 models, calibrated on augmented shared photos", "", *shared, "",
             *[f"    {c}" for c in shared_commands], ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
