"""Issue 21 figures: every board's memory map (from its vendor's reference manual, as the registry
holds it) and the QEMU machine it runs on; then the shared int8 models converted for stm32f405 and
stm32f100, verified byte for byte in QEMU's netduinoplus2 / stm32vldiscovery (the parts' own
memory maps), with where the linked firmware puts its vector table, code and data.

    .venv/bin/python benchmarks/boards.py [--out benchmarks/boards.md]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.shared_models import INT8_MODELS  # noqa: E402
from targets.elf import Elf  # noqa: E402
from targets.registry import BOARDS, TARGETS  # noqa: E402
from toolchain import pipeline  # noqa: E402
from toolchain.errors import UserError  # noqa: E402

# (model, --io) on each board QEMU runs on the board's own map; mcunet's float input (76,800 B)
# and its weights leave no room for test vectors in the F405's flash: --io int8.
RUNS = {"stm32f405": [("vww_96_int8", "model"), ("resnet8_int8", "model"), ("mcunet_vww1_int8", "int8"),
                      ("hello_world_int8", "model")],
        "stm32f100": [("hello_world_int8", "model"), ("vww_96_int8", "model")]}


def map_rows() -> list[str]:
    rows = ["| board | core | flash at | flash | SRAM at | SRAM | other RAM | clock | QEMU machine | source |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for b in BOARDS:
        m = b.memory
        banks = "; ".join(f"{k.name} {k.region.size // 1024} KB at {k.region.origin:#x}" for k in m.banks) or "-"
        machine = b.machine + (" (its own map)" if b.emulates_real_map else " (core's map, cut to the budgets)")
        rows.append(f"| {b.name} | {b.core} | {m.flash.origin:#010x} | {m.flash.size:,} | {m.ram.origin:#010x} | "
                    f"{m.ram.size:,} | {banks} | {b.clock_hz / 1e6:g} MHz | {machine} | {m.source} |")
    return rows


def sections(elf: Path) -> dict[str, tuple[int, int]]:
    return {s.name: (s.addr, s.addr + s.size) for s in Elf(elf).sections if s.size and s.name in (".text", ".data", ".bss")}


def run_rows(work: Path) -> list[str]:
    rows = ["| board | model | --io | bit-exact (reference / TFLM) | vector table | .text | .data + .bss | "
            "flash | peak SRAM | instructions |", "|---|---|---|---|---|---|---|---|---|---|"]
    for board, runs in RUNS.items():
        for name, io in runs:
            out = work / f"{board}-{name}"
            try:
                pipeline.convert(INT8_MODELS[name], board, out, io=io)
            except UserError as exc:
                rows.append(f"| {board} | {name} | {io} | refused at convert: {exc} | | | | | | |")
                continue
            report = pipeline.verify(out, board)
            v, mem = report["verification"], report["memory"]
            elf = out / "build" / board / "model.elf"
            s = sections(elf)
            data = [r for k, r in s.items() if k in (".data", ".bss")]
            rows.append(f"| {board} | {name} | {io} | {'yes' if v['bit_exact'] else 'NO'} / "
                        f"{'yes' if v['tflm_bit_exact'] else v['tflm_bit_exact']} | "
                        f"{Elf(elf).symbols()['vector_table'].value:#010x} | "
                        f"{s['.text'][0]:#010x}-{s['.text'][1] - 1:#010x} | "
                        f"{min(a for a, _ in data):#010x}-{max(b for _, b in data) - 1:#010x} | "
                        f"{mem['flash_bytes']:,} | {mem['peak_sram_bytes']:,} | {v['instructions_per_inference']:,} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="tinydeploy-boards-") as tmp:
        text = "\n".join([
            "# Boards: real memory maps, and runs on QEMU machines with those maps (issue 21)", "",
            f"Produced by `.venv/bin/python benchmarks/boards.py --out benchmarks/boards.md` at {commit}.", "",
            "## Memory maps (targets/registry.py)", "", *map_rows(), "",
            "## Verified on the part's own memory map", "",
            f"Default convert, {pipeline.DEFAULT_TEST_INPUTS} random inputs each; vector table, code and data as "
            "linked (`arm-none-eabi-readelf -S`); flash without the test vectors; peak SRAM = .data + .bss + "
            "stack high-water mark.", "", *run_rows(Path(tmp)), ""])
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
