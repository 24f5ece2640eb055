"""Issue 3 figures: every shared int8 model converted once, then built, run in QEMU and compared
byte for byte with the reference executor (and TFLM) on every emulated core of the registry, on
10 random inputs each. Per model x core: instructions per inference (and whether a second run
gives the same count), the independent check (a MODEL_BENCH_REPEAT=11 build adds
10 x inputs x the count to the whole run), flash and peak SRAM of the firmware. Then every board:
refused at convert time with the numbers, or verified against its budgets.

    .venv/bin/python benchmarks/emulation_table.py [--out benchmarks/emulation.md] [--no-repeat-check]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.shared_models import INT8_MODELS  # noqa: E402
from targets import build  # noqa: E402
from targets.registry import BOARDS, CORES  # noqa: E402
from toolchain.driver import pipeline  # noqa: E402
from toolchain.driver.options import ConvertOptions, TargetOptions  # noqa: E402
from toolchain.driver.manifest import MODEL_FILE  # noqa: E402
from toolchain.driver.verify import verify  # noqa: E402
from toolchain.errors import UserError  # noqa: E402

INPUTS = 10
REPEAT = 11
EMULATED = [t.name for t in CORES if t.emulator]


def convert_model(name: str, work: Path) -> tuple[Path, Path]:
    out = work / name
    pipeline.convert(INT8_MODELS[name], out)
    graph = pipeline.prepare_graph(out / MODEL_FILE, "model")
    inputs = work / f"{name}-inputs.npy"
    np.save(inputs, np.stack(pipeline.random_inputs(graph, INPUTS, seed=3)))
    return out, inputs


def measure(out: Path, inputs: Path, target: str, repeat_check: bool) -> dict:
    report = verify(out, target, inputs)
    v, mem = report["verification"], report["memory"]
    second = build.run(target, out / "build" / target / "model.elf").counts
    row = {"exact": v["bit_exact"], "tflm": v["tflm_bit_exact"], "per": v["instructions_per_inference"],
           "same": (second.total, second.per_inference) == (v["instructions_total"], v["instructions_per_inference"]),
           "flash": mem["flash_bytes"], "static": mem["static_ram_bytes"], "stack": mem["stack_bytes"],
           "peak": mem["peak_sram_bytes"], "ratio": None}
    if repeat_check:
        repeated = verify(out, target, extra_cflags=f"-DMODEL_BENCH_REPEAT={REPEAT}")["verification"]
        added = repeated["instructions_total"] - v["instructions_total"]
        row["ratio"] = added / ((REPEAT - 1) * v["inputs"] * v["instructions_per_inference"])
        row["exact"] = row["exact"] and repeated["bit_exact"]
    return row


def board_row(name: str, board, work: Path, inputs: Path) -> str:
    out = work / f"{name}-{board.name}"
    try:
        pipeline.convert(INT8_MODELS[name], out, ConvertOptions(TargetOptions(board.name)))
    except UserError as exc:
        return f"| {name} | {board.name} | refused at convert: {exc} |"
    try:
        report = verify(out, board.name, inputs)
    except UserError as exc:
        return f"| {name} | {board.name} | failed at verify: {exc} |"
    mem, v = report["memory"], report["verification"]
    return (f"| {name} | {board.name} | fits, bit-exact {'yes' if v['bit_exact'] else 'NO'}: flash {mem['flash_bytes']:,} "
            f"of {board.flash_bytes:,} B, peak SRAM {mem['peak_sram_bytes']:,} of {board.sram_bytes:,} B |")


def tool_versions() -> str:
    def first_line(cmd):
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
    return "; ".join(first_line(c) for c in (["arm-none-eabi-gcc", "--version"], ["riscv64-unknown-elf-gcc", "--version"],
                                             ["aarch64-linux-gnu-gcc", "--version"], ["qemu-system-arm", "--version"]))


def source_version() -> str:
    repo = Path(__file__).resolve().parents[1]
    return subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty"], capture_output=True,
                          text=True).stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("emulation.md"))
    parser.add_argument("--no-repeat-check", action="store_true")
    args = parser.parse_args()
    started = time.time()
    rows, per = [], {}
    boards = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in INT8_MODELS:
            out, inputs = convert_model(name, work)
            for target in EMULATED:
                r = measure(out, inputs, target, not args.no_repeat_check)
                per[name, target] = r["per"]
                ratio = f"{r['ratio']:.5f}" if r["ratio"] is not None else "-"
                rows.append(f"| {name} | {target} | {'yes' if r['exact'] else 'NO'} / "
                            f"{ {True: 'yes', False: 'NO', None: 'n/a'}[r['tflm']] } | {r['per']:,} | "
                            f"{'yes' if r['same'] else 'NO'} | {ratio} | {r['flash']:,} | {r['static']:,} | "
                            f"{r['stack']:,} | {r['peak']:,} |")
                print(rows[-1], flush=True)
            for board in BOARDS:
                boards.append(board_row(name, board, work, inputs))
                print(boards[-1], flush=True)
    models = list(INT8_MODELS)
    text = [
        "# Emulation: instructions per inference, flash and peak SRAM per model and target (issue 3)",
        "",
        "Produced by `.venv/bin/python benchmarks/emulation_table.py` "
        f"({time.time() - started:.0f} s on this machine). Each model is converted once "
        "(`tinydeploy convert MODEL -o OUT`, default schedule), then for every emulated core:",
        "```",
        "tinydeploy verify OUT --target T --inputs inputs.npy       # 10 random inputs",
        "tinydeploy verify OUT --target T --extra-cflags -DMODEL_BENCH_REPEAT=11",
        "```",
        "and once more the first ELF is run (`targets.build.run`) to check that the count repeats. For the",
        "boards: `tinydeploy convert MODEL --target BOARD -o OUT` then `tinydeploy verify OUT`.",
        "",
        f"Source: {source_version()}. Toolchains: {tool_versions()}.",
        "",
        "- instructions/inference: QEMU TCG plugin (targets/qemu_plugin/insncount.c), instructions from the",
        "  harness marker before each `model_invoke` to the one after, averaged over all invocations.",
        "- repeat check: (total instructions of the REPEAT=11 build - total of the REPEAT=1 build) /",
        "  (10 x inputs x instructions/inference); 1 means the count is exactly the model's.",
        "- flash: .text + .rodata + .data of the linked firmware (C library, start-up and harness included),",
        "  without the test vectors. Peak SRAM: .data + .bss of the firmware (arena, output buffer, C library)",
        "  + stack high-water mark painted and measured in emulation. The Pi/Android rows are static Linux",
        "  executables: their flash and .data/.bss include glibc.",
        "- memory maps (targets/registry.py): mps2 machines: code and weights in the 4 MB at 0x0, data at",
        "  0x20000000. mps3-an547 (M55) has only 512 KB at 0x0 and 0x20000000: the vector table stays in the",
        "  ITCM at 0x0, code and weights go to its 2 MB SRAM at 0x01000000, data to the 4 MB at 0x21000000.",
        "  virt (RISC-V): 4 MB code at 0x80000000, 4 MB data after it. Boards cut flash and RAM to their budgets.",
        "",
        "## Instructions per inference",
        "",
        "| target | " + " | ".join(models) + " |",
        "|---|" + "---|" * len(models),
        *[f"| {t} | " + " | ".join(f"{per[m, t]:,}" for m in models) + " |" for t in EMULATED],
        "",
        "## Every model x core",
        "",
        "| model | target | bit-exact ref / TFLM | instructions/inference | same on 2nd run | repeat-11 check | "
        "flash B | .data+.bss B | stack B | peak SRAM B |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "## Boards (budgets from targets/registry.py)",
        "",
        "| model | board | result |",
        "|---|---|---|",
        *boards,
        "",
    ]
    args.out.write_text("\n".join(text))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
