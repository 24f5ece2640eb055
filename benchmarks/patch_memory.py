"""Issue 4 figures: peak SRAM per shared model, layer by layer vs planned (patches, in place)
vs streamed input, measured on the target's firmware by `tinydeploy verify`; and (issue 20) the
plan a default convert chooses per board (the fastest that fits its SRAM less the reserve), its
measured peak SRAM and instructions against `--patch none` on the same board.

    .venv/bin/python benchmarks/patch_memory.py --target cortex-m4 [--out benchmarks/patch_memory.md]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.emulation_table import source_version  # noqa: E402
from benchmarks.shared_models import INT8_MODELS, TFLM_ARENA_BYTES  # noqa: E402
from toolchain.driver import pipeline  # noqa: E402
from toolchain.driver.options import ConvertOptions, PatchOptions, TargetOptions  # noqa: E402
from toolchain.driver.verify import verify  # noqa: E402

CASES = [("vww_96_int8", "model"), ("mcunet_vww1_int8", "int8"), ("resnet8_int8", "model"),
         ("hello_world_int8", "model")]
TINYENGINE = {"mcunet_vww1_int8": "62,352 (2x2 patches, hand-picked)"}
BOARDS = ("stm32l4r5", "stm32f746", "stm32f412", "nrf52832", "stm32f103c8")


def measure(name, io, target, work, patch=PatchOptions()):
    out = work / f"{name}-{io}-{patch.schedule}{'-streamed' if patch.stream_input else ''}"
    pipeline.convert(INT8_MODELS[name], out, ConvertOptions(TargetOptions(target, io), patch))
    return verify(out, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default="cortex-m4")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = ["| model | TFLM arena | layer-by-layer peak | planned peak (input in SRAM) | plan | MAC overhead "
            "| arena / lower bound | stack | streamed-input peak | bit-exact |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, io in CASES:
            plain = measure(name, io, args.target, work, PatchOptions("none"))
            auto = measure(name, io, args.target, work)
            try:
                streamed = measure(name, io, args.target, work, PatchOptions(stream_input=True))
                streamed_peak = f"{streamed['memory']['peak_sram_bytes']:,} ({streamed['plan']['patch']})"
                exact = streamed["verification"]["bit_exact"]
            except Exception as exc:  # no stage can start at the input (e.g. fully connected)
                streamed_peak, exact = f"n/a ({exc})", True
            m, c = auto["memory"], auto["compute"]
            all_exact = plain["verification"]["bit_exact"] and auto["verification"]["bit_exact"] and exact
            tflm = f"{TFLM_ARENA_BYTES[name]:,}" if name in TFLM_ARENA_BYTES else "-"
            rows.append(
                f"| {name}{' --io int8' if io == 'int8' else ''} | {tflm} "
                f"| {plain['memory']['peak_sram_bytes']:,} | **{m['peak_sram_bytes']:,}** | {auto['plan']['patch']} "
                f"| {c['mac_overhead']:.1%} | {m['arena_bytes']:,} / {m['lower_bound_bytes']:,} | {m['stack_bytes']:,} "
                f"| {streamed_peak} | {'yes' if all_exact else 'NO'} |")
    text = (f"# Peak SRAM per shared model (issue 4)\n\nProduced by `.venv/bin/python benchmarks/patch_memory.py "
            f"--target {args.target} --out benchmarks/patch_memory.md` at {source_version()}.\n\n")
    text += "\n".join(rows)
    text += (f"\n\nTarget {args.target}; peak SRAM = static RAM of the firmware (arena, output buffer, "
             "globals) + stack high-water mark measured in emulation (host: arena + output buffer + stack). "
             f"TinyEngine on MCUNet-VWW1: {TINYENGINE['mcunet_vww1_int8']}. "
             "TFLM arena: the smallest working arena in REFERENCE.md (hello_world: 1,936 by our own bisection, "
             "benchmarks/int8_end_to_end.md).\n")
    text += "\n" + "\n".join(board_rows()) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


def board_rows() -> list[str]:
    """Per model and board: the plan a default convert chooses, its measured peak SRAM and
    instructions per inference, and --patch none's on the same board (when it fits)."""
    rows = ["## The plan chosen per board (issue 20)\n",
            "Default `tinydeploy convert MODEL --target BOARD` (`--optimize speed`: the fewest MACs whose estimated "
            "peak SRAM fits the board's SRAM less a 10% reserve), then `tinydeploy verify`; the board's firmware "
            "runs in QEMU on its core's machine with the board's memory cut to its budgets.\n",
            "| model | board (SRAM) | chosen plan | peak SRAM | instructions | `--patch none` peak | `--patch none` "
            "instructions | chosen / none | bit-exact |", "|---|---|---|---|---|---|---|---|---|"]
    from targets.registry import get_target
    from toolchain.errors import UserError
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, io in CASES[:3]:
            for board in BOARDS:
                label = f"{name}{' --io int8' if io == 'int8' else ''}"
                sram = f"{board} ({get_target(board).sram_bytes // 1024} KB)"
                try:
                    chosen = measure(name, io, board, work)
                except UserError as exc:
                    rows.append(f"| {label} | {sram} | refused: {str(exc).split(': ', 1)[-1]} | | | | | | |")
                    continue
                try:
                    plain = measure(name, io, board, work, PatchOptions("none"))
                    plain_cells = (f"{plain['memory']['peak_sram_bytes']:,}",
                                   f"{plain['verification']['instructions_per_inference']:,}")
                    ratio = (chosen["verification"]["instructions_per_inference"]
                             / plain["verification"]["instructions_per_inference"])
                    exact = plain["verification"]["bit_exact"]
                except UserError:
                    plain_cells, ratio, exact = ("does not fit", ""), None, True
                v = chosen["verification"]
                rows.append(f"| {label} | {sram} | {chosen['plan']['patch']} | {chosen['memory']['peak_sram_bytes']:,} "
                            f"| {v['instructions_per_inference']:,} | {plain_cells[0]} | {plain_cells[1]} | "
                            f"{'' if ratio is None else f'{ratio:.3f}'} | "
                            f"{'yes' if v['bit_exact'] and exact else 'NO'} |")
    return rows


if __name__ == "__main__":
    main()
