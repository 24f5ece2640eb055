"""The target registry: targets are data (ISA, compiler, flags, budgets, emulator), not code.

A core is an instruction set with its compiler flags and the emulator that runs it. A board names
its core and adds the SRAM and flash budgets of the real part: it builds with its core's flags,
runs in its core's emulator, and links against a memory map cut down to its budgets, so a build
that would not fit the part does not link.

Memory maps, as QEMU 7.2 offers them (`info mtree`):
- mps2-an385 (M3), mps2-an386 (M4): SSRAM1 4 MB at 0x0 (code), SSRAM2/3 4 MB at 0x20000000,
  16 MB at 0x21000000. mps2-an500 (M7): the same, with the 16 MB at 0x60000000.
- mps3-an547 (M55): only 512 KB of ITCM at 0x0 and 512 KB of DTCM at 0x20000000, but 2 MB of
  SRAM at 0x01000000, 4 MB at 0x21000000 and DDR at 0x60000000. The vector table stays at 0x0
  (where the core fetches it on reset); code and weights go to the 2 MB at 0x01000000 (mcunet's
  540 KB of weights do not fit the ITCM) and data to the 4 MB at 0x21000000.
- virt (rv32imc): RAM from 0x80000000 (128 MB by default): 4 MB code, 4 MB data, then test data.
Each map has a test-data region outside the budgets for the compiled-in test vectors: a board
would stream its inputs; the vectors must not count against (or overflow) its flash.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from toolchain.errors import UserError
from toolchain.ops.choice import DSP, PORTABLE, KernelProfile

KB, MB = 1024, 1024 * 1024


@dataclass(frozen=True)
class Region:
    origin: int
    size: int


@dataclass(frozen=True)
class MemoryMap:
    flash: Region            # code, constants (weights), .data's load image
    ram: Region              # .data, .bss, heap, stack (stack at the top)
    test_data: Region        # compiled-in test vectors: emulator memory outside the budgets
    vectors: Region | None = None   # where the reset vector table must sit, when not at flash

    def cut(self, flash_bytes: int, sram_bytes: int) -> MemoryMap:
        """This map with flash and RAM cut to a board's budgets."""
        if flash_bytes > self.flash.size or sram_bytes > self.ram.size:
            raise ValueError("board budget larger than its emulator's memory")
        return dataclasses.replace(self, flash=Region(self.flash.origin, flash_bytes),
                                   ram=Region(self.ram.origin, sram_bytes))


@dataclass(frozen=True)
class Target:
    name: str
    isa: str
    description: str
    platform: str            # host | cortex-m | riscv | linux: startup code, linker script, C library
    compiler: str
    cflags: str              # architecture and optimisation flags (the Makefile adds -std=c99 -W...)
    ldflags: str             # C library and link flags (a bare-metal build adds its linker script)
    emulator: tuple[str, ...] = ()   # the command that runs the program (empty: run it natively)
    kernel_flag: str = ""    # how the emulator takes the program: "-kernel" (system) or "" (user mode)
    memory: MemoryMap | None = None  # bare metal only
    core: str = ""           # a board's core; a core names itself
    sram_bytes: int | None = None    # budgets: boards only
    flash_bytes: int | None = None
    packages: str = "gcc make"       # Debian packages that provide the compiler and the emulator

    @property
    def bare_metal(self) -> bool:
        return self.memory is not None

    @property
    def is_board(self) -> bool:
        return self.core != self.name

    @property
    def dsp_kernels(self) -> bool:
        """The build runs the Cortex-M DSP-extension kernels (TDK_DSP in tdk_opt.h): ARMv7E-M."""
        return self.isa.startswith("ARMv7E-M ")

    @property
    def kernel_profile(self) -> KernelProfile:
        """The arena layouts its optimized kernels need (the planner lays them out)."""
        return DSP if self.dsp_kernels else PORTABLE

    @property
    def machine(self) -> str:
        """The emulated machine: QEMU -M / -cpu, or 'native'."""
        if not self.emulator:
            return "native"
        flag = "-M" if "-M" in self.emulator else "-cpu"
        return f"{self.emulator[0]} {flag} {self.emulator[self.emulator.index(flag) + 1]}"


ARM_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
RISCV_PACKAGES = "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc"
AARCH64_PACKAGES = "gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"

COMMON_CFLAGS = "-O2 -ffunction-sections -fdata-sections"
SEMIHOSTING = ("-display", "none", "-monitor", "none", "-serial", "none")

MPS2 = MemoryMap(flash=Region(0x00000000, 4 * MB), ram=Region(0x20000000, 4 * MB),
                 test_data=Region(0x21000000, 16 * MB))
MPS2_AN500 = dataclasses.replace(MPS2, test_data=Region(0x60000000, 16 * MB))
MPS3_AN547 = MemoryMap(flash=Region(0x01000000, 2 * MB), ram=Region(0x21000000, 4 * MB),
                       test_data=Region(0x60000000, 16 * MB), vectors=Region(0x00000000, 512 * KB))
RISCV_VIRT = MemoryMap(flash=Region(0x80000000, 4 * MB), ram=Region(0x80400000, 4 * MB),
                       test_data=Region(0x80800000, 16 * MB))


def cortex_m(name: str, arch: str, fpu: str, machine: str, memory: MemoryMap, description: str) -> Target:
    return Target(
        name, f"{arch} Thumb-2", description, "cortex-m",
        "arm-none-eabi-gcc", f"-mcpu={name} -mthumb {fpu} {COMMON_CFLAGS}",
        "--specs=nano.specs --specs=rdimon.specs -Wl,--gc-sections -lm",
        ("qemu-system-arm", "-M", machine, *SEMIHOSTING, "-semihosting-config", "enable=on,target=native"),
        "-kernel", memory, name, packages=f"gcc make {ARM_PACKAGES}")


def aarch64(name: str, cpu: str, flags: str, description: str) -> Target:
    return Target(name, f"AArch64 ({cpu})", description, "linux", "aarch64-linux-gnu-gcc",
                  f"{flags} {COMMON_CFLAGS}", "-static -Wl,--gc-sections -lm", ("qemu-aarch64", "-cpu", cpu),
                  core=name, packages=f"gcc make {AARCH64_PACKAGES}")


CORES = [
    Target("host", "x86-64 (build machine)", "the build machine itself", "host", "gcc", "-O2",
           "-lm -Wl,-z,now", core="host"),
    cortex_m("cortex-m3", "ARMv7-M", "-mfloat-abi=soft", "mps2-an385", MPS2, "Cortex-M3, no FPU, no DSP"),
    cortex_m("cortex-m4", "ARMv7E-M", "-mfloat-abi=hard -mfpu=fpv4-sp-d16", "mps2-an386", MPS2,
             "Cortex-M4F: DSP extension (SMLAD), single-precision FPU"),
    cortex_m("cortex-m7", "ARMv7E-M", "-mfloat-abi=hard -mfpu=fpv5-d16", "mps2-an500", MPS2_AN500,
             "Cortex-M7: DSP extension, double-precision FPU"),
    cortex_m("cortex-m55", "ARMv8.1-M", "-mfloat-abi=hard", "mps3-an547", MPS3_AN547,
             "Cortex-M55: Helium (MVE) vector extension"),
    Target("rv32imc", "RV32IMC", "32-bit RISC-V MCU core (integer, multiply, compressed)", "riscv",
           "riscv64-unknown-elf-gcc", f"-march=rv32imc -mabi=ilp32 {COMMON_CFLAGS}",
           "--specs=picolibc.specs --oslib=semihost --crt0=semihost -Wl,--gc-sections -lm",
           ("qemu-system-riscv32", "-M", "virt", "-bios", "none", *SEMIHOSTING, "-chardev", "stdio,id=sh0",
            "-semihosting-config", "enable=on,target=native,chardev=sh0"),
           "-kernel", RISCV_VIRT, "rv32imc", packages=f"gcc make {RISCV_PACKAGES}"),
    aarch64("rpi-zero2", "cortex-a53", "-mcpu=cortex-a53", "Raspberry Pi Zero 2 W / Pi 3 (Cortex-A53), Linux"),
    aarch64("rpi4", "cortex-a72", "-mcpu=cortex-a72", "Raspberry Pi 4 (Cortex-A72), Linux"),
    aarch64("rpi5", "cortex-a76", "-mcpu=cortex-a76", "Raspberry Pi 5 (Cortex-A76, dot product), Linux"),
    # Any arm64-v8a phone: the ABI's baseline instruction set, run on its oldest core. A static
    # binary runs on Android as it is (same kernel interface); the NDK is not needed to test it.
    aarch64("android-arm64", "cortex-a53", "-march=armv8-a", "Android phone, arm64-v8a baseline (static binary)"),
]


def board(name: str, core: str, sram_bytes: int, flash_bytes: int, description: str) -> Target:
    base = next(c for c in CORES if c.name == core)
    return dataclasses.replace(base, name=name, core=core, description=description, sram_bytes=sram_bytes,
                               flash_bytes=flash_bytes, memory=base.memory.cut(flash_bytes, sram_bytes))


BOARDS = [
    board("stm32f746", "cortex-m7", 320 * KB, 1 * MB, "STM32F746 (Discovery kit): 320 KB SRAM, 1 MB flash"),
    board("stm32l4r5", "cortex-m4", 640 * KB, 2 * MB, "STM32L4R5 (NUCLEO-L4R5ZI, MLPerf Tiny reference)"),
    board("stm32f412", "cortex-m4", 256 * KB, 1 * MB, "STM32F412 (NUCLEO-F412ZG)"),
    board("nrf52840", "cortex-m4", 256 * KB, 1 * MB, "nRF52840 (Arduino Nano 33 BLE)"),
    board("nrf52832", "cortex-m4", 64 * KB, 512 * KB, "nRF52832: 64 KB RAM, 512 KB flash"),
    board("stm32f103c8", "cortex-m3", 20 * KB, 64 * KB, "STM32F103C8 (Blue Pill): 20 KB SRAM, 64 KB flash"),
    board("esp32c3", "rv32imc", 400 * KB, 4 * MB, "ESP32-C3 (RISC-V): 400 KB SRAM, 4 MB in-package flash"),
]

TARGETS = {t.name: t for t in CORES + BOARDS}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise UserError(f"unknown target '{name}' (known: {', '.join(TARGETS)})")
    return TARGETS[name]
