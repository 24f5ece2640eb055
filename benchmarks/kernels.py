"""Issue 8 figures: `tinydeploy bench` (toolchain/driver/bench.py) for every shared int8 model on the cores
with optimized kernels: instructions per inference and per MAC with the optimized and with the
portable kernels (-DTDK_PORTABLE_KERNELS), flash and peak SRAM of both builds (both verified byte
for byte against the reference and, where it exists, TFLM), and a per-op table for cortex-m4.

    .venv/bin/python benchmarks/kernels.py [--out benchmarks/kernels.md] [--targets cortex-m4,rv32imc]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.emulation_table import source_version, tool_versions  # noqa: E402
from benchmarks.shared_models import INT8_MODELS  # noqa: E402
from toolchain.driver.bench import bench  # noqa: E402

TARGETS = ["cortex-m4", "cortex-m7", "cortex-m55", "rv32imc", "rpi4", "rpi5"]
PER_OP_TARGET = "cortex-m4"
# Best published Cortex-M4 cycle counts (REFERENCE.md: X-CUBE-AI 9.0), the bar.
M4_ANCHORS = {"vww_96_int8": 10_670_000, "resnet8_int8": 19_820_000}


def model_row(name: str, target: str, result: dict) -> str:
    opt, port = result["builds"]["optimized"], result["builds"]["portable"]
    anchor = M4_ANCHORS.get(name) if target == "cortex-m4" else None
    bar = ("" if anchor is None else
           f" ({'meets' if opt['instructions_per_inference'] <= anchor else 'MISSES'} <= {anchor / 1e6:.2f} M)")
    return (f"| {name} | {target} | {result['macs']:,} | {opt['instructions_per_inference']:,}{bar} | "
            f"{opt['instructions_per_mac']:.2f} | {port['instructions_per_inference']:,} | "
            f"{port['instructions_per_mac']:.2f} | "
            f"{port['instructions_per_inference'] / opt['instructions_per_inference']:.1f}x | "
            f"{opt['flash_bytes']:,} / {port['flash_bytes']:,} | {opt['peak_sram_bytes']:,} / {port['peak_sram_bytes']:,} |")


def per_op_table(name: str, result: dict) -> list[str]:
    lines = [f"### {name} on {PER_OP_TARGET}", "",
             "| # | op | MACs | optimized | /MAC | portable | /MAC | speed-up |", "|---|---|---|---|---|---|---|---|"]
    for row in result["ops"]:
        per = [f"{row[f] / row['macs']:.2f}" if row["macs"] else "" for f in ("optimized", "portable")]
        lines.append(f"| {row['index']} | {row['op']} | {row['macs']:,} | {row['optimized']:,} | {per[0]} | "
                     f"{row['portable']:,} | {per[1]} | {row['portable'] / max(row['optimized'], 1):.1f}x |")
    builds = result["builds"]
    lines += [f"| | glue (model_invoke between calls) | | {builds['optimized']['glue_instructions']:,} | | "
              f"{builds['portable']['glue_instructions']:,} | | |", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("kernels.md"))
    parser.add_argument("--targets", default=",".join(TARGETS))
    args = parser.parse_args()
    targets = args.targets.split(",")
    started = time.time()
    rows, per_op = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in INT8_MODELS.items():
            for target in targets:
                result = bench(model, target, Path(tmp) / f"{name}-{target}", ops=target == PER_OP_TARGET)
                rows.append(model_row(name, target, result))
                print(rows[-1], flush=True)
                if target == PER_OP_TARGET:
                    per_op += per_op_table(name, result)
    text = [
        "# Kernels: instructions per inference, optimized vs portable (issue 8)",
        "",
        f"Produced by `.venv/bin/python benchmarks/kernels.py` ({time.time() - started:.0f} s on this machine); "
        "one row is `tinydeploy bench MODEL --target T` (1 random input, layer-by-layer schedule, `--patch none`).",
        "Both builds of every row were verified byte for byte against the reference executor (and TFLM) first.",
        "",
        f"Source: {source_version()}. Toolchains: {tool_versions()}.",
        "",
        "- instructions: QEMU TCG plugin count of one `model_invoke`; MACs: the model's multiply-accumulates.",
        "- flash: .text + .rodata + .data of the firmware without test vectors; peak SRAM: .data + .bss + measured",
        "  stack high-water mark. The Pi rows are static Linux executables (glibc included).",
        "- per-op rows: instructions from each kernel call in `model_invoke` to its return (one QEMU run per op).",
        "",
        "| model | target | MACs | optimized instr. | /MAC | portable instr. | /MAC | speed-up | flash opt / port B | "
        "peak SRAM opt / port B |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "## Per op",
        "",
        *per_op,
    ]
    args.out.write_text("\n".join(text))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
