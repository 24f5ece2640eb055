"""Build an emitted C project for a target and run it; parse the harness output."""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from toolchain.errors import UserError

from .registry import get_target

RUN_TIMEOUT_S = 600


@dataclass
class RunResult:
    outputs: dict[int, bytes]
    stack_bytes: int | None
    stdout: str


def build(c_dir: Path, target: str, build_dir: Path, extra_cflags: str = "") -> Path:
    t = get_target(target)
    for tool in ("make", t.compiler):
        if shutil.which(tool) is None:
            raise UserError(f"'{tool}' not found: it is needed to build for {target} ({t.install_hint})")
    cmd = ["make", "-s", "-C", str(c_dir), f"TARGET={target}", f"BUILD_DIR={build_dir.resolve()}"]
    if extra_cflags:
        cmd.append(f"EXTRA_CFLAGS={extra_cflags}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        first = next((line for line in (proc.stderr + proc.stdout).splitlines() if "error" in line),
                     (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"])
        raise UserError(f"build for {target} failed: {first if isinstance(first, str) else first[0]}")
    return build_dir.resolve() / "model.elf"


def run(target: str, elf: Path, timeout: float = RUN_TIMEOUT_S) -> RunResult:
    get_target(target)
    try:
        proc = subprocess.run([str(elf)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"run on {target} timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or [""])[0][:200]
        raise UserError(f"run on {target} failed with exit code {proc.returncode} {detail}".rstrip())
    return parse_harness_output(proc.stdout)


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
