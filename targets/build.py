"""Build an emitted C project for a target, run it natively or in QEMU (with the instruction
counter), parse the harness output, and size the firmware."""
from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from toolchain.errors import UserError

from .c_emitter import write_test_inputs
from .counting import Counts, plugin_args, read_counts
from .elf import Elf
from .registry import Target, get_target

RUN_TIMEOUT_S = 600
TEST_VECTORS = "harness_inputs"   # templates/harness/test_inputs.c.j2
SHF_TLS = 0x400


@dataclass
class RunResult:
    outputs: dict[int, bytes]
    stack_bytes: int | None
    stdout: str
    counts: Counts | None = None


def check_tools(t: Target) -> None:
    for tool in ("make", t.compiler, *t.emulator[:1]):
        if shutil.which(tool) is None:
            raise UserError(f"'{tool}' not found: it is needed for target {t.name} "
                            f"(run `make setup`, or apt-get install {t.packages})")


def build(c_dir: Path, target: str, build_dir: Path, extra_cflags: str = "") -> Path:
    t = get_target(target)
    check_tools(t)
    cmd = ["make", "-s", "-C", str(c_dir), f"TARGET={target}", f"BUILD_DIR={build_dir.resolve()}", "MAP=qemu"]
    if extra_cflags:
        cmd.append(f"EXTRA_CFLAGS={extra_cflags}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr + proc.stdout).strip().splitlines()
        first = next((line for line in lines if "error" in line or "overflow" in line), lines[-1] if lines else "?")
        raise UserError(f"build for {target} failed: {first.strip()}")
    return build_dir.resolve() / "model.elf"


def build_and_run(c_dir: Path, target: str, build_dir: Path, inputs: list, ctype: str, prefix: str,
                  extra_cflags: str = "", progress=None) -> tuple[Path, RunResult]:
    """Build the harness with `inputs` compiled in and run it. When the emulator keeps the test
    vectors in the board's own flash (a board QEMU runs on its real map) and they do not fit
    beside the firmware, run them in as many builds as it takes; the outputs are numbered as in
    `inputs`, the counts add up. The project keeps all of `inputs` in harness/test_inputs.c."""
    step = progress or (lambda message: None)
    t = get_target(target)
    step(f"building for {target}")
    try:
        elf = build(c_dir, target, build_dir, extra_cflags)
    except UserError as exc:
        vectors_in_flash = t.qemu_memory is not None and t.qemu_memory.test_data is None
        if not (vectors_in_flash and len(inputs) > 1 and re.search(r"overflow|will not fit", str(exc))):
            raise
        batch = _vectors_that_fit(c_dir, t, build_dir, inputs, ctype, prefix, extra_cflags)
    else:
        step(f"running {len(inputs)} inputs on {target}")
        return elf, run(target, elf)
    merged = RunResult({}, None, "")
    try:
        for start in range(0, len(inputs), batch):
            step(f"running inputs {start}-{min(start + batch, len(inputs)) - 1} of {len(inputs)} on {target} "
                 f"(the test vectors fill its flash)")
            write_test_inputs(c_dir, inputs[start:start + batch], ctype, prefix)
            elf = build(c_dir, target, build_dir, extra_cflags)
            part = run(target, elf)
            merged.outputs.update({start + i: out for i, out in part.outputs.items()})
            merged.stack_bytes = max(merged.stack_bytes or 0, part.stack_bytes or 0)
            merged.stdout += part.stdout
            merged.counts = part.counts if merged.counts is None else merged.counts + part.counts
    finally:
        write_test_inputs(c_dir, inputs, ctype, prefix)
    return elf, merged


def _vectors_that_fit(c_dir: Path, t: Target, build_dir: Path, inputs: list, ctype: str, prefix: str,
                      extra_cflags: str) -> int:
    """How many test vectors fit in the flash beside the firmware (measured on a build with one)."""
    write_test_inputs(c_dir, inputs[:1], ctype, prefix)
    try:
        elf = build(c_dir, t.name, build_dir, extra_cflags)
    except UserError as exc:
        raise UserError(f"{exc} (even with a single test vector in the board's flash)") from None
    vector = Elf(elf).symbols()[TEST_VECTORS].size
    free = t.qemu_memory.flash.size - firmware_memory(elf)["flash_bytes"]
    return max(1, free // max(vector, 1) - 1)   # one vector's room for alignment


def run(target: str, elf: Path, timeout: float = RUN_TIMEOUT_S, count: bool = True) -> RunResult:
    """Run the harness; in QEMU, count instructions unless count=False. A hang, a fault or a
    non-zero exit is a UserError naming the target."""
    t = get_target(target)
    where = f"{target} ({t.machine})" if t.emulator else target
    with tempfile.TemporaryDirectory(prefix="tinydeploy-run-") as tmp:
        counts_file = Path(tmp) / "counts.txt"
        cmd = [str(elf)]
        if t.emulator:
            counter = plugin_args(elf, t.platform == "cortex-m", counts_file) if count else []
            cmd = [*t.emulator, *counter, *([t.kernel_flag] if t.kernel_flag else []), str(elf)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise UserError(f"run on {where} timed out after {timeout:g} s: the program hangs "
                            f"(or needs longer than the limit)") from None
        if proc.returncode != 0:
            raise UserError(f"run on {where} failed: {_failure(proc)}")
        result = parse_harness_output(proc.stdout)
        if t.emulator and count:
            result.counts = read_counts(counts_file)
    return result


def _failure(proc: subprocess.CompletedProcess) -> str:
    if proc.returncode < 0:
        how = f"killed by {signal.Signals(-proc.returncode).name}"
    else:
        how = f"exit status {proc.returncode}"
    said = [line.strip() for line in (proc.stdout + "\n" + proc.stderr).splitlines()
            if re.search(r"fault|exception|signal|error|abort", line, re.I)]
    return f"{how}{': ' + said[0][:200] if said else ''}"


OUT_LINE = re.compile(r"^OUT (\d+) ([0-9a-f]*)$")
STACK_LINE = re.compile(r"^STACK (\d+)$")


def parse_harness_output(stdout: str) -> RunResult:
    outputs, stack = {}, None
    for line in stdout.splitlines():
        line = line.strip()
        if m := OUT_LINE.match(line):
            outputs[int(m.group(1))] = bytes.fromhex(m.group(2))
        elif m := STACK_LINE.match(line):
            stack = int(m.group(1))
    return RunResult(outputs, stack, stdout)


def firmware_memory(elf: Path) -> dict[str, int]:
    """Sizes from the linked program. flash: everything with contents in memory (code, constants,
    the load image of .data), without the compiled-in test vectors. static_ram: .data + .bss (all
    writable sections; thread-local .tbss has its room in .tbss_space on bare metal)."""
    image = Elf(elf)
    loaded = [s for s in image.sections if s.in_memory]
    vectors = image.symbols().get(TEST_VECTORS)
    flash = sum(s.size for s in loaded if s.has_contents) - (vectors.size if vectors else 0)
    static_ram = sum(s.size for s in loaded if s.writable and not (s.flags & SHF_TLS and not s.has_contents))
    return {"flash_bytes": flash, "static_ram_bytes": static_ram}
