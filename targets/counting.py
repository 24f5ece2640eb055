"""Instruction counts from QEMU: the project's TCG plugin (targets/qemu_plugin/insncount.c), built
with the host's gcc once per version of its source, and the harness markers it counts between."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from toolchain.errors import UserError

from .elf import Elf

MARK_BEGIN, MARK_END = "harness_mark_begin", "harness_mark_end"   # templates/harness/main.c.j2
PLUGIN_SOURCES = ("insncount.c", "qemu_plugin_api.h")


@dataclass
class Counts:
    total: int      # every instruction the program executed, start-up and printing included
    region: int     # between the markers: the model invocations
    regions: int    # how many invocations

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.total + other.total, self.region + other.region, self.regions + other.regions)

    @property
    def per_inference(self) -> int | None:
        return round(self.region / self.regions) if self.regions else None


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tinydeploy"


def plugin_path() -> Path:
    """The built plugin, built now if this version of its source has not been built yet."""
    source = resources.files("targets") / "qemu_plugin"
    digest = hashlib.sha256(b"".join((source / name).read_bytes() for name in PLUGIN_SOURCES)).hexdigest()[:16]
    lib = cache_dir() / f"insncount-{digest}.so"
    if lib.exists():
        return lib
    if shutil.which("gcc") is None:
        raise UserError("'gcc' not found: it builds the instruction-counting QEMU plugin (apt-get install gcc)")
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        built = Path(tmp) / lib.name
        proc = subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                               str(source / "insncount.c"), "-o", str(built)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"building the QEMU plugin failed: {(proc.stderr.strip().splitlines() or ['?'])[0]}")
        built.replace(lib)   # atomic: parallel builds of the same source end in the same file
    return lib


def plugin_args(elf: Path, thumb: bool, out_file: Path) -> list[str]:
    """-plugin arguments counting between the harness markers of `elf`. Thumb function symbols
    carry the mode in bit 0; the instructions sit at the even address."""
    symbols = Elf(elf).symbols()
    missing = [m for m in (MARK_BEGIN, MARK_END) if m not in symbols]
    if missing:
        raise UserError(f"{elf}: no {' or '.join(missing)} symbol: not a tinydeploy harness build")
    begin, end = (symbols[m].value & ~1 if thumb else symbols[m].value for m in (MARK_BEGIN, MARK_END))
    return ["-plugin", f"{plugin_path()},begin={begin:#x},end={end:#x},out={out_file}"]


def read_counts(out_file: Path) -> Counts:
    values = dict(line.split() for line in out_file.read_text().splitlines() if line.strip())
    return Counts(int(values["total"]), int(values["region"]), int(values["regions"]))
