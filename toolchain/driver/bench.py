"""`tinydeploy bench`: instructions per inference of a model on an emulated target, with the
optimized kernels and with the portable ones (-DTDK_PORTABLE_KERNELS), MACs, instructions per
MAC, flash and peak SRAM of each build, and a per-op table.

Both builds are verified byte for byte (driver.verify). Per op, the counting plugin counts from
each kernel call in model_invoke to its return address (one emulator run per op): the kernel and
everything it calls; the few instructions model_invoke spends between calls (arguments, input and
output copies) are the "glue" row. Counts are exact and the same on every run."""
from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from targets.build import check_tools
from targets.counting import plugin_path, read_counts
from targets.elf import Elf
from targets.registry import get_target
from toolchain.errors import UserError
from toolchain.read_policy import DEFAULT_POLICY, ReadPolicy

from .manifest import MODEL_FILE
from .options import ConvertOptions, PatchOptions, TargetOptions
from .pipeline import convert, optimize, prepare_graph, random_inputs
from .progress import SILENT, Progress
from .verify import verify

FLAVOURS = {"optimized": "", "portable": "-DTDK_PORTABLE_KERNELS"}
CALL = re.compile(r"^\s*([0-9a-f]+):.*\b(bl|jal|call)\s.*<(?:\w+?_)?(tdk_\w+)>")   # <prefix>_tdk_...
ADDRESS = re.compile(r"^\s*([0-9a-f]+):")


def call_sites(elf: Path, target: str, invoke: str = "model_run") -> list[tuple[int, int, str]]:
    """(call address, return address, kernel) of every kernel call in `invoke` (the function that
    runs the schedule: model.c.j2), in code order."""
    t = get_target(target)
    symbol = Elf(elf).symbols().get(invoke)
    if symbol is None:
        raise UserError(f"{elf}: no {invoke} symbol")
    start = symbol.value & ~1 if t.platform == "cortex-m" else symbol.value
    objdump = t.compiler[:-len("gcc")] + "objdump"
    proc = subprocess.run([objdump, "-d", f"--start-address={start:#x}", f"--stop-address={start + symbol.size:#x}",
                           str(elf)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"{objdump} failed on {elf}: {proc.stderr.strip()[:200]}")
    lines = [line for line in proc.stdout.splitlines() if ADDRESS.match(line)]
    sites = []
    for line, following in zip(lines, lines[1:]):
        if m := CALL.match(line):
            sites.append((int(m.group(1), 16), int(ADDRESS.match(following).group(1), 16), m.group(3)))
    return sites


def count_region(target: str, elf: Path, begin: int, end: int) -> tuple[int, int]:
    """(instructions, times) from each execution of the instruction at `begin` to the next of the
    one at `end`, over the whole run of the harness."""
    t = get_target(target)
    with tempfile.TemporaryDirectory(prefix="tinydeploy-bench-") as tmp:
        out = Path(tmp) / "counts.txt"
        plugin = ["-plugin", f"{plugin_path()},begin={begin:#x},end={end:#x},out={out}"]
        cmd = [*t.emulator, *plugin, *([t.kernel_flag] if t.kernel_flag else []), str(elf)]
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise UserError(f"run on {target} failed (exit status {proc.returncode})")
        counts = read_counts(out)
    return counts.region, counts.regions


def per_op(target: str, elf: Path, ops: int, inferences: int, progress: Progress) -> list[int]:
    """Instructions per inference of each op's kernel call (ops in graph order: one call each)."""
    sites = call_sites(elf, target)
    if len(sites) != ops:
        raise UserError(f"{elf}: {len(sites)} kernel calls in the schedule for {ops} ops; no per-op table")
    counts = []
    for k, (begin, end, _) in enumerate(sites):
        progress.step(f"counting op {k + 1}/{len(sites)}")
        region, _ = count_region(target, elf, begin, end)
        counts.append(round(region / inferences))
    return counts


def bench(model: str | Path, target: str, out_dir: str | Path, patch: str = "none", inputs: int = 1,
          ops: bool = True, progress: Progress = SILENT, policy: ReadPolicy = DEFAULT_POLICY) -> dict:
    """Convert MODEL for `target` into out_dir, verify the optimized and the portable build, and
    return (and write to out_dir/bench.json) the figures."""
    t = get_target(target)
    if not t.emulator:
        raise UserError(f"bench counts instructions in an emulator; {target} runs natively (pick an emulated target)")
    check_tools(t)
    out_dir = Path(out_dir)
    progress.step(f"converting {model}")
    report = convert(model, out_dir, ConvertOptions(TargetOptions(target), PatchOptions(patch), policy=policy))
    graph = optimize(prepare_graph(out_dir / MODEL_FILE, "model"))
    np.save(out_dir / "bench_inputs.npy", np.stack(random_inputs(graph, inputs, seed=1)))
    macs = report["compute"]["macs"]
    result = {"model": Path(model).name, "target": target, "patch": report["plan"]["patch"], "macs": macs,
              "executed_macs": report["compute"]["executed_macs"], "inputs": inputs, "builds": {},
              "ops": [{"index": layer["index"], "op": layer["op"], "macs": layer["macs"]} for layer in report["layers"]]}
    for flavour, cflags in FLAVOURS.items():
        progress.step(f"{flavour} kernels: building and verifying")
        verified = verify(out_dir, target, out_dir / "bench_inputs.npy", cflags, progress)
        v, mem = verified["verification"], verified["memory"]
        if not v["bit_exact"] or v["tflm_bit_exact"] is False:
            raise UserError(f"{flavour} build for {target} is not byte-exact: no figures")
        instructions = v["instructions_per_inference"]
        result["builds"][flavour] = {
            "cflags": cflags, "instructions_per_inference": instructions,
            "instructions_per_mac": round(instructions / macs, 3), "flash_bytes": mem["flash_bytes"],
            "peak_sram_bytes": mem["peak_sram_bytes"], "stack_bytes": mem["stack_bytes"],
            "bit_exact": v["bit_exact"], "tflm_bit_exact": v["tflm_bit_exact"]}
        if ops:
            elf = out_dir / "build" / target / "model.elf"
            counts = per_op(target, elf, len(report["layers"]), inputs, progress)
            for row, n in zip(result["ops"], counts):
                row[flavour] = n
            result["builds"][flavour]["glue_instructions"] = instructions - sum(counts)
    (out_dir / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
