"""The target registry: targets are data (ISA, compiler, flags, budgets, emulator), not code."""
from __future__ import annotations

from dataclasses import dataclass

from toolchain.errors import UserError


@dataclass(frozen=True)
class Target:
    name: str
    isa: str
    compiler: str
    sram_bytes: int | None
    flash_bytes: int | None
    emulator: str
    install_hint: str
    description: str


TARGETS = {
    t.name: t for t in [
        Target("host", "x86-64 (build machine)", "gcc", None, None, "native",
               "apt-get install gcc make", "the build machine itself"),
    ]
}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise UserError(f"unknown target '{name}' (known: {', '.join(TARGETS)})")
    return TARGETS[name]
