"""Issue 2 figures: every shared int8 model converted and verified on the host against the
reference executor and TensorFlow Lite Micro, on 20 random inputs plus the real data that fits;
arena vs TFLM's smallest working arena (found here by bisection); the class predicted for each
real photo.

    .venv/bin/python benchmarks/int8_end_to_end.py [--out benchmarks/int8_end_to_end.md]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.shared_models import INT8_MODELS, class_names, real_float_inputs, to_model_input  # noqa: E402
from toolchain import tflm  # noqa: E402
from toolchain.driver import pipeline  # noqa: E402
from toolchain.driver.options import ConvertOptions, PatchOptions, TargetOptions  # noqa: E402
from toolchain.driver.manifest import MODEL_FILE  # noqa: E402
from toolchain.driver.verify import verify  # noqa: E402

CASES = [("vww_96_int8", "model"), ("resnet8_int8", "model"), ("mcunet_vww1_int8", "model"),
         ("mcunet_vww1_int8", "int8"), ("hello_world_int8", "model")]


def run_case(name, io, work: Path, patch: str):
    out = work / f"{name}-{io}"
    pipeline.convert(INT8_MODELS[name], out, ConvertOptions(TargetOptions(io=io), PatchOptions(patch)))
    graph = pipeline.prepare_graph(out / MODEL_FILE, io)
    real = real_float_inputs(name)
    inputs = pipeline.random_inputs(graph, 20, seed=11) + [to_model_input(graph, img).reshape(-1) for _, img in real]
    np.save(work / "inputs.npy", np.stack(inputs))
    report = verify(out, "host", work / "inputs.npy")
    classes = class_names(name)
    preds = report["predictions"][20:]
    labelled = [f"{label}: {classes[p] if classes else p}" for (label, _), p in zip(real, preds)]
    if name == "hello_world_int8":
        t = graph.tensors[graph.outputs[0]]
        labelled = [f"{label} -> {(p - t.zero_point()) * t.scale():.3f} (sin {np.sin(float(label[2:])):.3f})"
                    for (label, _), p in zip(real, preds)]
    return report, labelled


def tflm_arena(name) -> int:
    data = INT8_MODELS[name].read_bytes()
    graph = pipeline.prepare_graph(INT8_MODELS[name], "model")
    feeds = pipeline.split_feeds(graph, pipeline.random_inputs(graph, 1)[0])
    return tflm.smallest_arena(data, feeds, len(graph.outputs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--patch", default="none", help="schedule for this table (default: layer by layer)")
    args = parser.parse_args()
    lines = ["| model | inputs (random + real) | bit-exact vs reference | bit-exact vs TFLM | our arena | "
             "TFLM smallest arena (bisection) | stack | peak SRAM |", "|---|---|---|---|---|---|---|---|"]
    predictions = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, io in CASES:
            report, labelled = run_case(name, io, Path(tmp), args.patch)
            v, m = report["verification"], report["memory"]
            lines.append(f"| {name}{' --io int8' if io == 'int8' else ''} | {v['inputs']} (20 + {v['inputs'] - 20}) "
                         f"| {'100%' if v['bit_exact'] else 'NO'} | {'100%' if v['tflm_bit_exact'] else 'NO'} "
                         f"| {m['arena_bytes']:,} | {tflm_arena(name):,} | {m['stack_bytes']:,} | {m['peak_sram_bytes']:,} |")
            predictions.append(f"- {name}{' --io int8' if io == 'int8' else ''}: " + "; ".join(labelled))
    text = "\n".join(lines) + "\n\nPredictions of the C program on the real inputs:\n" + "\n".join(predictions) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
