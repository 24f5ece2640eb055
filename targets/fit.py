"""Does a model fit a board? Estimated at convert time (refuse before building), measured on the
real firmware at verify time (report, and refuse the board when the measurement says no)."""
from __future__ import annotations

from pathlib import Path

from toolchain.errors import UserError

from .build import firmware_memory
from .registry import Target

# Convert-time estimates beyond what the plan knows (arena, output buffer, weights), with margin
# over what verify measured on the shared models (benchmarks/emulation.md): beyond the weights
# the Cortex-M and RISC-V firmware takes 12-17 KB of flash (C library, start-up, harness, kernels),
# beyond the arena under 1.4 KB of .data + .bss, and the stack stays under 3 KB.
STACK_ESTIMATE_BYTES = 3 * 1024
RUNTIME_RAM_BYTES = 2 * 1024
RUNTIME_FLASH_BYTES = 16 * 1024
KERNEL_FLASH_BYTES = 4 * 1024


def estimate(arena_bytes: int, output_bytes: int, weights_bytes: int, kernels: int) -> dict[str, int]:
    return {"sram_bytes": arena_bytes + output_bytes + STACK_ESTIMATE_BYTES + RUNTIME_RAM_BYTES,
            "flash_bytes": weights_bytes + RUNTIME_FLASH_BYTES + KERNEL_FLASH_BYTES * kernels}


def check_fits(t: Target, model: str, need: dict[str, int], how: str) -> None:
    """UserError, one line with the numbers, when `need` exceeds the board's budgets."""
    over = [f"{need[k]:,} B of {kind} ({how}), the board has {budget:,} B"
            for k, kind, budget in (("sram_bytes", "SRAM", t.sram_bytes), ("flash_bytes", "flash", t.flash_bytes))
            if budget is not None and need[k] > budget]
    if over:
        raise UserError(f"{model} does not fit {t.name}: needs {'; and '.join(over)}")


def measured_memory(t: Target, elf: Path, stack_bytes: int | None, memory: dict) -> dict:
    """report.json memory keys from a verified build. In emulation: the linked firmware's flash
    (without the test vectors) and .data + .bss, plus the stack high-water mark. Natively (host):
    the plan's arena and output buffer plus the stack."""
    stack = stack_bytes or 0
    if not t.emulator:
        return {"stack_bytes": stack_bytes,
                "peak_sram_bytes": memory["arena_bytes"] + memory["output_buffer_bytes"] + stack}
    fw = firmware_memory(elf)
    return {"stack_bytes": stack_bytes, "flash_bytes": fw["flash_bytes"], "static_ram_bytes": fw["static_ram_bytes"],
            "peak_sram_bytes": fw["static_ram_bytes"] + stack,
            "peak_sram_note": ".data + .bss of the linked firmware (arena, output buffer, C library) + stack "
                              "high-water mark measured in emulation; flash: code, constants and .data of the "
                              "firmware without the compiled-in test vectors",
            "budget": {"sram_bytes": t.sram_bytes, "flash_bytes": t.flash_bytes} if t.is_board else None}
